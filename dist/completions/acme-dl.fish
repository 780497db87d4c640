# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_acme_dl_global_optspecs
    string join \n syslog-socket= no-syslog log-stderr v/verbose h/help V/version
end

function __fish_acme_dl_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_acme_dl_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_acme_dl_using_subcommand
    set -l cmd (__fish_acme_dl_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c acme-dl -n "__fish_acme_dl_needs_command" -l syslog-socket -d 'Syslog socket to log to (facility daemon); when it cannot be reached, logs go to stderr' -r -F
complete -c acme-dl -n "__fish_acme_dl_needs_command" -l no-syslog -d 'Log to stderr only, not to syslog'
complete -c acme-dl -n "__fish_acme_dl_needs_command" -l log-stderr -d 'Also write every log line to stderr'
complete -c acme-dl -n "__fish_acme_dl_needs_command" -s v -l verbose -d 'Log debug messages too'
complete -c acme-dl -n "__fish_acme_dl_needs_command" -s h -l help -d 'Print help'
complete -c acme-dl -n "__fish_acme_dl_needs_command" -s V -l version -d 'Print version'
complete -c acme-dl -n "__fish_acme_dl_needs_command" -f -a "server" -d 'Serve the lineages of a Certbot directory to clients with a certificate from the CA'
complete -c acme-dl -n "__fish_acme_dl_needs_command" -f -a "client" -d 'Fetch lineages whose local copy is stale and install them'
complete -c acme-dl -n "__fish_acme_dl_needs_command" -f -a "demo" -d 'Run a complete loopback demonstration: PKI, store, server, client, renewal'
complete -c acme-dl -n "__fish_acme_dl_needs_command" -f -a "pki" -d 'Manage the fleet\'s private CA: root, client intermediate, server and client certificates, revocation lists'
complete -c acme-dl -n "__fish_acme_dl_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c acme-dl -n "__fish_acme_dl_using_subcommand server" -l config -d 'TOML configuration file [default: /etc/acme-dl/server.toml when it exists]' -r -F
complete -c acme-dl -n "__fish_acme_dl_using_subcommand server" -l listen -d 'Address and port to listen on, IPv4 or [IPv6] [default: 0.0.0.0:8443]' -r
complete -c acme-dl -n "__fish_acme_dl_using_subcommand server" -l metrics-listen -d 'Serve Prometheus metrics over plain HTTP at ADDR:PORT/metrics. A port alone, such as 9464, binds 127.0.0.1, and other addresses than loopback are logged as a warning [default: off, unless the file sets metrics_listen]' -r
complete -c acme-dl -n "__fish_acme_dl_using_subcommand server" -l certbot-dir -d 'Certbot\'s configuration directory; lineages are read from its live/ [default: /etc/letsencrypt]' -r -F
complete -c acme-dl -n "__fish_acme_dl_using_subcommand server" -l cert -d 'Server certificate chain, PEM [default: tls/server.crt]' -r -F
complete -c acme-dl -n "__fish_acme_dl_using_subcommand server" -l key -d 'Server private key, PEM: PKCS#1, SEC1 or PKCS#8 [default: tls/server.key]' -r -F
complete -c acme-dl -n "__fish_acme_dl_using_subcommand server" -l ca -d 'CA bundle that client certificates must chain to, PEM [default: tls/ca.crt]' -r -F
complete -c acme-dl -n "__fish_acme_dl_using_subcommand server" -l crl -d 'Certificate revocation list for client certificates, PEM or DER; repeat for several. SIGHUP reloads them' -r -F
complete -c acme-dl -n "__fish_acme_dl_using_subcommand server" -l explain -d 'With --check-config: print what the client certificate in FILE may fetch' -r -F
complete -c acme-dl -n "__fish_acme_dl_using_subcommand server" -l syslog-socket -d 'Syslog socket to log to (facility daemon); when it cannot be reached, logs go to stderr' -r -F
complete -c acme-dl -n "__fish_acme_dl_using_subcommand server" -l allow-all-clients -d 'Let every client of the CA fetch every lineage and key, as the Go server did; the server warns about it at every start. Without it, [[access]] rules are required'
complete -c acme-dl -n "__fish_acme_dl_using_subcommand server" -l check-config -d 'Validate the configuration, TLS files, store and access policy, print a summary and exit: 0 when valid, 2 otherwise'
complete -c acme-dl -n "__fish_acme_dl_using_subcommand server" -l no-syslog -d 'Log to stderr only, not to syslog'
complete -c acme-dl -n "__fish_acme_dl_using_subcommand server" -l log-stderr -d 'Also write every log line to stderr'
complete -c acme-dl -n "__fish_acme_dl_using_subcommand server" -s v -l verbose -d 'Log debug messages too'
complete -c acme-dl -n "__fish_acme_dl_using_subcommand server" -s h -l help -d 'Print help'
complete -c acme-dl -n "__fish_acme_dl_using_subcommand server" -s V -l version -d 'Print version'
complete -c acme-dl -n "__fish_acme_dl_using_subcommand client" -l config -d 'TOML configuration file [default: /etc/acme-dl/client.toml when it exists]' -r -F
complete -c acme-dl -n "__fish_acme_dl_using_subcommand client" -l server -d 'Server URL, for example https://certs.example.net:8443 (required here or in the file)' -r
complete -c acme-dl -n "__fish_acme_dl_using_subcommand client" -l dest -d 'Directory that receives one directory per lineage [default: /etc/letsencrypt/live]' -r -F
complete -c acme-dl -n "__fish_acme_dl_using_subcommand client" -l cert -d 'Client certificate chain, PEM [default: tls/client.crt]' -r -F
complete -c acme-dl -n "__fish_acme_dl_using_subcommand client" -l key -d 'Client private key, PEM: PKCS#1, SEC1 or PKCS#8 [default: tls/client.key]' -r -F
complete -c acme-dl -n "__fish_acme_dl_using_subcommand client" -l ca -d 'CA bundle that the server certificate must chain to, PEM [default: tls/ca.crt]' -r -F
complete -c acme-dl -n "__fish_acme_dl_using_subcommand client" -l connect-timeout -d 'Seconds allowed for the TCP connection and TLS handshake [default: 10]' -r
complete -c acme-dl -n "__fish_acme_dl_using_subcommand client" -l request-timeout -d 'Seconds allowed for each request and its response [default: 30]' -r
complete -c acme-dl -n "__fish_acme_dl_using_subcommand client" -l timeout -d 'Seconds allowed for the whole run, retries and hooks included [default: 300]' -r
complete -c acme-dl -n "__fish_acme_dl_using_subcommand client" -l retries -d 'Retries after a transient failure (refused, timed out, 503), with backoff [default: 3]' -r
complete -c acme-dl -n "__fish_acme_dl_using_subcommand client" -l splay -d 'Wait a random delay up to DURATION first, for example 30m, so a fleet started by cron does not reach the server in the same second [default: 0]' -r
complete -c acme-dl -n "__fish_acme_dl_using_subcommand client" -l on-change -d 'Command run once after the run when any lineage changed, for example "systemctl reload nginx"' -r
complete -c acme-dl -n "__fish_acme_dl_using_subcommand client" -l check-command -d 'Command run before on_change, for example "nginx -t"; when it fails, the previous sets are restored and the run fails' -r
complete -c acme-dl -n "__fish_acme_dl_using_subcommand client" -l hook-timeout -d 'Seconds a hook may run before it is killed [default: 60]' -r
complete -c acme-dl -n "__fish_acme_dl_using_subcommand client" -l keep -d 'Previous sets kept per lineage for --rollback [default: 2]' -r
complete -c acme-dl -n "__fish_acme_dl_using_subcommand client" -l renew-before-days -d 'Days before the client certificate\'s end from which the client renews it through the server [default: the last third of its lifetime]' -r
complete -c acme-dl -n "__fish_acme_dl_using_subcommand client" -l lock-file -d 'Lock file that keeps two runs from installing at once [default: DEST/.acme-dl-client.lock]' -r -F
complete -c acme-dl -n "__fish_acme_dl_using_subcommand client" -l warn -d 'With --check: WARNING when a certificate has fewer than DAYS whole days left [default: 21]' -r
complete -c acme-dl -n "__fish_acme_dl_using_subcommand client" -l crit -d 'With --check: CRITICAL when a certificate has fewer than DAYS whole days left, at most --warn [default: 7]' -r
complete -c acme-dl -n "__fish_acme_dl_using_subcommand client" -l syslog-socket -d 'Syslog socket to log to (facility daemon); when it cannot be reached, logs go to stderr' -r -F
complete -c acme-dl -n "__fish_acme_dl_using_subcommand client" -l no-renew-identity -d 'Never renew the client certificate through the server; only warn as its end nears'
complete -c acme-dl -n "__fish_acme_dl_using_subcommand client" -l exit-code -d 'Exit 1 when a lineage was updated, 0 when nothing changed, as git diff --exit-code does'
complete -c acme-dl -n "__fish_acme_dl_using_subcommand client" -l rollback -d 'Switch the named lineages back to their previous set, run their hooks, and exit'
complete -c acme-dl -n "__fish_acme_dl_using_subcommand client" -l check -d 'Check the installed sets and the client certificate as a Nagios plugin, without contacting the server or changing any file: print one status line and exit 0 (OK), 1 (WARNING), 2 (CRITICAL) or 3 (UNKNOWN)'
complete -c acme-dl -n "__fish_acme_dl_using_subcommand client" -l no-syslog -d 'Log to stderr only, not to syslog'
complete -c acme-dl -n "__fish_acme_dl_using_subcommand client" -l log-stderr -d 'Also write every log line to stderr'
complete -c acme-dl -n "__fish_acme_dl_using_subcommand client" -s v -l verbose -d 'Log debug messages too'
complete -c acme-dl -n "__fish_acme_dl_using_subcommand client" -s h -l help -d 'Print help'
complete -c acme-dl -n "__fish_acme_dl_using_subcommand client" -s V -l version -d 'Print version'
complete -c acme-dl -n "__fish_acme_dl_using_subcommand demo" -l keep -d 'Keep the generated PKI, store and configuration files in DIR (created when missing)' -r -F
complete -c acme-dl -n "__fish_acme_dl_using_subcommand demo" -l syslog-socket -d 'Syslog socket to log to (facility daemon); when it cannot be reached, logs go to stderr' -r -F
complete -c acme-dl -n "__fish_acme_dl_using_subcommand demo" -l no-syslog -d 'Log to stderr only, not to syslog'
complete -c acme-dl -n "__fish_acme_dl_using_subcommand demo" -l log-stderr -d 'Also write every log line to stderr'
complete -c acme-dl -n "__fish_acme_dl_using_subcommand demo" -s v -l verbose -d 'Log debug messages too'
complete -c acme-dl -n "__fish_acme_dl_using_subcommand demo" -s h -l help -d 'Print help'
complete -c acme-dl -n "__fish_acme_dl_using_subcommand demo" -s V -l version -d 'Print version'
complete -c acme-dl -n "__fish_acme_dl_using_subcommand pki; and not __fish_seen_subcommand_from init import server client revoke crl list help" -l syslog-socket -d 'Syslog socket to log to (facility daemon); when it cannot be reached, logs go to stderr' -r -F
complete -c acme-dl -n "__fish_acme_dl_using_subcommand pki; and not __fish_seen_subcommand_from init import server client revoke crl list help" -l no-syslog -d 'Log to stderr only, not to syslog'
complete -c acme-dl -n "__fish_acme_dl_using_subcommand pki; and not __fish_seen_subcommand_from init import server client revoke crl list help" -l log-stderr -d 'Also write every log line to stderr'
complete -c acme-dl -n "__fish_acme_dl_using_subcommand pki; and not __fish_seen_subcommand_from init import server client revoke crl list help" -s v -l verbose -d 'Log debug messages too'
complete -c acme-dl -n "__fish_acme_dl_using_subcommand pki; and not __fish_seen_subcommand_from init import server client revoke crl list help" -s h -l help -d 'Print help'
complete -c acme-dl -n "__fish_acme_dl_using_subcommand pki; and not __fish_seen_subcommand_from init import server client revoke crl list help" -s V -l version -d 'Print version'
complete -c acme-dl -n "__fish_acme_dl_using_subcommand pki; and not __fish_seen_subcommand_from init import server client revoke crl list help" -f -a "init" -d 'Create a root CA, an intermediate CA for client certificates, the trust bundle, the revocation lists and the index in a new directory'
complete -c acme-dl -n "__fish_acme_dl_using_subcommand pki; and not __fish_seen_subcommand_from init import server client revoke crl list help" -f -a "import" -d 'Adopt an existing CA certificate and key, made with OpenSSL for example, as the root and create the client intermediate under it'
complete -c acme-dl -n "__fish_acme_dl_using_subcommand pki; and not __fish_seen_subcommand_from init import server client revoke crl list help" -f -a "server" -d 'Issue a server certificate signed by the root'
complete -c acme-dl -n "__fish_acme_dl_using_subcommand pki; and not __fish_seen_subcommand_from init import server client revoke crl list help" -f -a "client" -d 'Issue a client certificate signed by the client intermediate and print its [[access]] rule'
complete -c acme-dl -n "__fish_acme_dl_using_subcommand pki; and not __fish_seen_subcommand_from init import server client revoke crl list help" -f -a "revoke" -d 'Revoke a certificate by serial, or every unexpired certificate of an identity, and write the revocation lists again'
complete -c acme-dl -n "__fish_acme_dl_using_subcommand pki; and not __fish_seen_subcommand_from init import server client revoke crl list help" -f -a "crl" -d 'Write the revocation lists again with a new CRL number and next update'
complete -c acme-dl -n "__fish_acme_dl_using_subcommand pki; and not __fish_seen_subcommand_from init import server client revoke crl list help" -f -a "list" -d 'List every issued certificate with its state'
complete -c acme-dl -n "__fish_acme_dl_using_subcommand pki; and not __fish_seen_subcommand_from init import server client revoke crl list help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c acme-dl -n "__fish_acme_dl_using_subcommand pki; and __fish_seen_subcommand_from init" -l dir -d 'Directory of the PKI, as made by pki init or pki import' -r -F
complete -c acme-dl -n "__fish_acme_dl_using_subcommand pki; and __fish_seen_subcommand_from init" -l passphrase-file -d 'File whose first line is the passphrase of the root key (ca.key), when it is encrypted' -r -F
complete -c acme-dl -n "__fish_acme_dl_using_subcommand pki; and __fish_seen_subcommand_from init" -l key-type -d 'Key algorithm of the CAs, and default of the certificates issued later' -r -f -a "ecdsa-p256\t''
ecdsa-p384\t''
ed25519\t''
rsa2048\t''
rsa3072\t''
rsa4096\t''"
complete -c acme-dl -n "__fish_acme_dl_using_subcommand pki; and __fish_seen_subcommand_from init" -l days -d 'Days the root and the client intermediate are valid' -r
complete -c acme-dl -n "__fish_acme_dl_using_subcommand pki; and __fish_seen_subcommand_from init" -l name -d 'Common name of the root CA; the client intermediate is named "NAME clients"' -r
complete -c acme-dl -n "__fish_acme_dl_using_subcommand pki; and __fish_seen_subcommand_from init" -l syslog-socket -d 'Syslog socket to log to (facility daemon); when it cannot be reached, logs go to stderr' -r -F
complete -c acme-dl -n "__fish_acme_dl_using_subcommand pki; and __fish_seen_subcommand_from init" -l no-syslog -d 'Log to stderr only, not to syslog'
complete -c acme-dl -n "__fish_acme_dl_using_subcommand pki; and __fish_seen_subcommand_from init" -l log-stderr -d 'Also write every log line to stderr'
complete -c acme-dl -n "__fish_acme_dl_using_subcommand pki; and __fish_seen_subcommand_from init" -s v -l verbose -d 'Log debug messages too'
complete -c acme-dl -n "__fish_acme_dl_using_subcommand pki; and __fish_seen_subcommand_from init" -s h -l help -d 'Print help'
complete -c acme-dl -n "__fish_acme_dl_using_subcommand pki; and __fish_seen_subcommand_from init" -s V -l version -d 'Print version'
complete -c acme-dl -n "__fish_acme_dl_using_subcommand pki; and __fish_seen_subcommand_from import" -l dir -d 'Directory of the PKI, as made by pki init or pki import' -r -F
complete -c acme-dl -n "__fish_acme_dl_using_subcommand pki; and __fish_seen_subcommand_from import" -l passphrase-file -d 'File whose first line is the passphrase of the root key (ca.key), when it is encrypted' -r -F
complete -c acme-dl -n "__fish_acme_dl_using_subcommand pki; and __fish_seen_subcommand_from import" -l ca-cert -d 'Certificate of the existing CA, PEM' -r -F
complete -c acme-dl -n "__fish_acme_dl_using_subcommand pki; and __fish_seen_subcommand_from import" -l ca-key -d 'Key of the existing CA, PEM: PKCS#1, SEC1, PKCS#8, or encrypted PKCS#8 with --passphrase-file' -r -F
complete -c acme-dl -n "__fish_acme_dl_using_subcommand pki; and __fish_seen_subcommand_from import" -l key-type -d 'Key algorithm of the client intermediate, and default of the certificates issued later' -r -f -a "ecdsa-p256\t''
ecdsa-p384\t''
ed25519\t''
rsa2048\t''
rsa3072\t''
rsa4096\t''"
complete -c acme-dl -n "__fish_acme_dl_using_subcommand pki; and __fish_seen_subcommand_from import" -l days -d 'Days the client intermediate is valid, at most until the imported CA expires' -r
complete -c acme-dl -n "__fish_acme_dl_using_subcommand pki; and __fish_seen_subcommand_from import" -l syslog-socket -d 'Syslog socket to log to (facility daemon); when it cannot be reached, logs go to stderr' -r -F
complete -c acme-dl -n "__fish_acme_dl_using_subcommand pki; and __fish_seen_subcommand_from import" -l no-syslog -d 'Log to stderr only, not to syslog'
complete -c acme-dl -n "__fish_acme_dl_using_subcommand pki; and __fish_seen_subcommand_from import" -l log-stderr -d 'Also write every log line to stderr'
complete -c acme-dl -n "__fish_acme_dl_using_subcommand pki; and __fish_seen_subcommand_from import" -s v -l verbose -d 'Log debug messages too'
complete -c acme-dl -n "__fish_acme_dl_using_subcommand pki; and __fish_seen_subcommand_from import" -s h -l help -d 'Print help'
complete -c acme-dl -n "__fish_acme_dl_using_subcommand pki; and __fish_seen_subcommand_from import" -s V -l version -d 'Print version'
complete -c acme-dl -n "__fish_acme_dl_using_subcommand pki; and __fish_seen_subcommand_from server" -l dir -d 'Directory of the PKI, as made by pki init or pki import' -r -F
complete -c acme-dl -n "__fish_acme_dl_using_subcommand pki; and __fish_seen_subcommand_from server" -l passphrase-file -d 'File whose first line is the passphrase of the root key (ca.key), when it is encrypted' -r -F
complete -c acme-dl -n "__fish_acme_dl_using_subcommand pki; and __fish_seen_subcommand_from server" -l name -d 'Host name of the server: common name and first DNS name, or an IP address' -r
complete -c acme-dl -n "__fish_acme_dl_using_subcommand pki; and __fish_seen_subcommand_from server" -l ip -d 'Further IP address the certificate is valid for; repeat for several' -r
complete -c acme-dl -n "__fish_acme_dl_using_subcommand pki; and __fish_seen_subcommand_from server" -l dns -d 'Further DNS name the certificate is valid for; repeat for several' -r
complete -c acme-dl -n "__fish_acme_dl_using_subcommand pki; and __fish_seen_subcommand_from server" -l days -d 'Days the certificate is valid' -r
complete -c acme-dl -n "__fish_acme_dl_using_subcommand pki; and __fish_seen_subcommand_from server" -l key-type -d 'Key algorithm [default: the one given to pki init]' -r -f -a "ecdsa-p256\t''
ecdsa-p384\t''
ed25519\t''
rsa2048\t''
rsa3072\t''
rsa4096\t''"
complete -c acme-dl -n "__fish_acme_dl_using_subcommand pki; and __fish_seen_subcommand_from server" -l out -d 'Directory receiving HOST.crt and HOST.key [default: DIR/servers]' -r -F
complete -c acme-dl -n "__fish_acme_dl_using_subcommand pki; and __fish_seen_subcommand_from server" -l syslog-socket -d 'Syslog socket to log to (facility daemon); when it cannot be reached, logs go to stderr' -r -F
complete -c acme-dl -n "__fish_acme_dl_using_subcommand pki; and __fish_seen_subcommand_from server" -l no-syslog -d 'Log to stderr only, not to syslog'
complete -c acme-dl -n "__fish_acme_dl_using_subcommand pki; and __fish_seen_subcommand_from server" -l log-stderr -d 'Also write every log line to stderr'
complete -c acme-dl -n "__fish_acme_dl_using_subcommand pki; and __fish_seen_subcommand_from server" -s v -l verbose -d 'Log debug messages too'
complete -c acme-dl -n "__fish_acme_dl_using_subcommand pki; and __fish_seen_subcommand_from server" -s h -l help -d 'Print help'
complete -c acme-dl -n "__fish_acme_dl_using_subcommand pki; and __fish_seen_subcommand_from server" -s V -l version -d 'Print version'
complete -c acme-dl -n "__fish_acme_dl_using_subcommand pki; and __fish_seen_subcommand_from client" -l dir -d 'Directory of the PKI, as made by pki init or pki import' -r -F
complete -c acme-dl -n "__fish_acme_dl_using_subcommand pki; and __fish_seen_subcommand_from client" -l passphrase-file -d 'File whose first line is the passphrase of the root key (ca.key), when it is encrypted' -r -F
complete -c acme-dl -n "__fish_acme_dl_using_subcommand pki; and __fish_seen_subcommand_from client" -l name -d 'Identity of the client: the certificate\'s common name, matched by cn:ID rules' -r
complete -c acme-dl -n "__fish_acme_dl_using_subcommand pki; and __fish_seen_subcommand_from client" -l lineage -d 'Lineage name or glob the printed [[access]] rule allows; repeat for several' -r
complete -c acme-dl -n "__fish_acme_dl_using_subcommand pki; and __fish_seen_subcommand_from client" -l days -d 'Days the certificate is valid' -r
complete -c acme-dl -n "__fish_acme_dl_using_subcommand pki; and __fish_seen_subcommand_from client" -l key-type -d 'Key algorithm [default: the one given to pki init]' -r -f -a "ecdsa-p256\t''
ecdsa-p384\t''
ed25519\t''
rsa2048\t''
rsa3072\t''
rsa4096\t''"
complete -c acme-dl -n "__fish_acme_dl_using_subcommand pki; and __fish_seen_subcommand_from client" -l out -d 'Directory receiving ID.crt and ID.key [default: DIR/clients]' -r -F
complete -c acme-dl -n "__fish_acme_dl_using_subcommand pki; and __fish_seen_subcommand_from client" -l syslog-socket -d 'Syslog socket to log to (facility daemon); when it cannot be reached, logs go to stderr' -r -F
complete -c acme-dl -n "__fish_acme_dl_using_subcommand pki; and __fish_seen_subcommand_from client" -l certificates-only -d 'Print a rule that allows certificates only, never private keys'
complete -c acme-dl -n "__fish_acme_dl_using_subcommand pki; and __fish_seen_subcommand_from client" -l no-syslog -d 'Log to stderr only, not to syslog'
complete -c acme-dl -n "__fish_acme_dl_using_subcommand pki; and __fish_seen_subcommand_from client" -l log-stderr -d 'Also write every log line to stderr'
complete -c acme-dl -n "__fish_acme_dl_using_subcommand pki; and __fish_seen_subcommand_from client" -s v -l verbose -d 'Log debug messages too'
complete -c acme-dl -n "__fish_acme_dl_using_subcommand pki; and __fish_seen_subcommand_from client" -s h -l help -d 'Print help'
complete -c acme-dl -n "__fish_acme_dl_using_subcommand pki; and __fish_seen_subcommand_from client" -s V -l version -d 'Print version'
complete -c acme-dl -n "__fish_acme_dl_using_subcommand pki; and __fish_seen_subcommand_from revoke" -l dir -d 'Directory of the PKI, as made by pki init or pki import' -r -F
complete -c acme-dl -n "__fish_acme_dl_using_subcommand pki; and __fish_seen_subcommand_from revoke" -l passphrase-file -d 'File whose first line is the passphrase of the root key (ca.key), when it is encrypted' -r -F
complete -c acme-dl -n "__fish_acme_dl_using_subcommand pki; and __fish_seen_subcommand_from revoke" -l reason -d 'Reason code written into the revocation list' -r -f -a "unspecified\t''
key-compromise\t''
affiliation-changed\t''
superseded\t''
cessation-of-operation\t''
privilege-withdrawn\t''"
complete -c acme-dl -n "__fish_acme_dl_using_subcommand pki; and __fish_seen_subcommand_from revoke" -l days -d 'Days until the next update of the new revocation lists' -r
complete -c acme-dl -n "__fish_acme_dl_using_subcommand pki; and __fish_seen_subcommand_from revoke" -l syslog-socket -d 'Syslog socket to log to (facility daemon); when it cannot be reached, logs go to stderr' -r -F
complete -c acme-dl -n "__fish_acme_dl_using_subcommand pki; and __fish_seen_subcommand_from revoke" -l unindexed -d 'Revoke a serial the index does not list, issued by the root outside acme-dl, such as a certificate of an imported CA'
complete -c acme-dl -n "__fish_acme_dl_using_subcommand pki; and __fish_seen_subcommand_from revoke" -l no-syslog -d 'Log to stderr only, not to syslog'
complete -c acme-dl -n "__fish_acme_dl_using_subcommand pki; and __fish_seen_subcommand_from revoke" -l log-stderr -d 'Also write every log line to stderr'
complete -c acme-dl -n "__fish_acme_dl_using_subcommand pki; and __fish_seen_subcommand_from revoke" -s v -l verbose -d 'Log debug messages too'
complete -c acme-dl -n "__fish_acme_dl_using_subcommand pki; and __fish_seen_subcommand_from revoke" -s h -l help -d 'Print help'
complete -c acme-dl -n "__fish_acme_dl_using_subcommand pki; and __fish_seen_subcommand_from revoke" -s V -l version -d 'Print version'
complete -c acme-dl -n "__fish_acme_dl_using_subcommand pki; and __fish_seen_subcommand_from crl" -l dir -d 'Directory of the PKI, as made by pki init or pki import' -r -F
complete -c acme-dl -n "__fish_acme_dl_using_subcommand pki; and __fish_seen_subcommand_from crl" -l passphrase-file -d 'File whose first line is the passphrase of the root key (ca.key), when it is encrypted' -r -F
complete -c acme-dl -n "__fish_acme_dl_using_subcommand pki; and __fish_seen_subcommand_from crl" -l days -d 'Days until the next update of the new revocation lists' -r
complete -c acme-dl -n "__fish_acme_dl_using_subcommand pki; and __fish_seen_subcommand_from crl" -l syslog-socket -d 'Syslog socket to log to (facility daemon); when it cannot be reached, logs go to stderr' -r -F
complete -c acme-dl -n "__fish_acme_dl_using_subcommand pki; and __fish_seen_subcommand_from crl" -l no-syslog -d 'Log to stderr only, not to syslog'
complete -c acme-dl -n "__fish_acme_dl_using_subcommand pki; and __fish_seen_subcommand_from crl" -l log-stderr -d 'Also write every log line to stderr'
complete -c acme-dl -n "__fish_acme_dl_using_subcommand pki; and __fish_seen_subcommand_from crl" -s v -l verbose -d 'Log debug messages too'
complete -c acme-dl -n "__fish_acme_dl_using_subcommand pki; and __fish_seen_subcommand_from crl" -s h -l help -d 'Print help'
complete -c acme-dl -n "__fish_acme_dl_using_subcommand pki; and __fish_seen_subcommand_from crl" -s V -l version -d 'Print version'
complete -c acme-dl -n "__fish_acme_dl_using_subcommand pki; and __fish_seen_subcommand_from list" -l dir -d 'Directory of the PKI, as made by pki init or pki import' -r -F
complete -c acme-dl -n "__fish_acme_dl_using_subcommand pki; and __fish_seen_subcommand_from list" -l syslog-socket -d 'Syslog socket to log to (facility daemon); when it cannot be reached, logs go to stderr' -r -F
complete -c acme-dl -n "__fish_acme_dl_using_subcommand pki; and __fish_seen_subcommand_from list" -l no-syslog -d 'Log to stderr only, not to syslog'
complete -c acme-dl -n "__fish_acme_dl_using_subcommand pki; and __fish_seen_subcommand_from list" -l log-stderr -d 'Also write every log line to stderr'
complete -c acme-dl -n "__fish_acme_dl_using_subcommand pki; and __fish_seen_subcommand_from list" -s v -l verbose -d 'Log debug messages too'
complete -c acme-dl -n "__fish_acme_dl_using_subcommand pki; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c acme-dl -n "__fish_acme_dl_using_subcommand pki; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c acme-dl -n "__fish_acme_dl_using_subcommand pki; and __fish_seen_subcommand_from help" -f -a "init" -d 'Create a root CA, an intermediate CA for client certificates, the trust bundle, the revocation lists and the index in a new directory'
complete -c acme-dl -n "__fish_acme_dl_using_subcommand pki; and __fish_seen_subcommand_from help" -f -a "import" -d 'Adopt an existing CA certificate and key, made with OpenSSL for example, as the root and create the client intermediate under it'
complete -c acme-dl -n "__fish_acme_dl_using_subcommand pki; and __fish_seen_subcommand_from help" -f -a "server" -d 'Issue a server certificate signed by the root'
complete -c acme-dl -n "__fish_acme_dl_using_subcommand pki; and __fish_seen_subcommand_from help" -f -a "client" -d 'Issue a client certificate signed by the client intermediate and print its [[access]] rule'
complete -c acme-dl -n "__fish_acme_dl_using_subcommand pki; and __fish_seen_subcommand_from help" -f -a "revoke" -d 'Revoke a certificate by serial, or every unexpired certificate of an identity, and write the revocation lists again'
complete -c acme-dl -n "__fish_acme_dl_using_subcommand pki; and __fish_seen_subcommand_from help" -f -a "crl" -d 'Write the revocation lists again with a new CRL number and next update'
complete -c acme-dl -n "__fish_acme_dl_using_subcommand pki; and __fish_seen_subcommand_from help" -f -a "list" -d 'List every issued certificate with its state'
complete -c acme-dl -n "__fish_acme_dl_using_subcommand pki; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c acme-dl -n "__fish_acme_dl_using_subcommand help; and not __fish_seen_subcommand_from server client demo pki help" -f -a "server" -d 'Serve the lineages of a Certbot directory to clients with a certificate from the CA'
complete -c acme-dl -n "__fish_acme_dl_using_subcommand help; and not __fish_seen_subcommand_from server client demo pki help" -f -a "client" -d 'Fetch lineages whose local copy is stale and install them'
complete -c acme-dl -n "__fish_acme_dl_using_subcommand help; and not __fish_seen_subcommand_from server client demo pki help" -f -a "demo" -d 'Run a complete loopback demonstration: PKI, store, server, client, renewal'
complete -c acme-dl -n "__fish_acme_dl_using_subcommand help; and not __fish_seen_subcommand_from server client demo pki help" -f -a "pki" -d 'Manage the fleet\'s private CA: root, client intermediate, server and client certificates, revocation lists'
complete -c acme-dl -n "__fish_acme_dl_using_subcommand help; and not __fish_seen_subcommand_from server client demo pki help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c acme-dl -n "__fish_acme_dl_using_subcommand help; and __fish_seen_subcommand_from pki" -f -a "init" -d 'Create a root CA, an intermediate CA for client certificates, the trust bundle, the revocation lists and the index in a new directory'
complete -c acme-dl -n "__fish_acme_dl_using_subcommand help; and __fish_seen_subcommand_from pki" -f -a "import" -d 'Adopt an existing CA certificate and key, made with OpenSSL for example, as the root and create the client intermediate under it'
complete -c acme-dl -n "__fish_acme_dl_using_subcommand help; and __fish_seen_subcommand_from pki" -f -a "server" -d 'Issue a server certificate signed by the root'
complete -c acme-dl -n "__fish_acme_dl_using_subcommand help; and __fish_seen_subcommand_from pki" -f -a "client" -d 'Issue a client certificate signed by the client intermediate and print its [[access]] rule'
complete -c acme-dl -n "__fish_acme_dl_using_subcommand help; and __fish_seen_subcommand_from pki" -f -a "revoke" -d 'Revoke a certificate by serial, or every unexpired certificate of an identity, and write the revocation lists again'
complete -c acme-dl -n "__fish_acme_dl_using_subcommand help; and __fish_seen_subcommand_from pki" -f -a "crl" -d 'Write the revocation lists again with a new CRL number and next update'
complete -c acme-dl -n "__fish_acme_dl_using_subcommand help; and __fish_seen_subcommand_from pki" -f -a "list" -d 'List every issued certificate with its state'
