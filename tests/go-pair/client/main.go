// Command acme_dl_client is a test fixture that re-creates the deployed Go
// acme_dl_client from its wire contract, so that acme-dl's interoperability
// tests can run against it. It is not the deployed code, whose source the
// project does not have.
//
// For each domain argument the client sends the SHA-256 hashes of its local
// fullchain.pem, privkey.pem and chain.pem to POST /api/check and, when the
// server returns "update_required": true, downloads all three files over the
// same keep-alive connection.
//
// The fixture keeps the deployed client's known weaknesses on purpose:
//   - It truncates and rewrites each file in place with mode 0600, and verifies
//     nothing before it does.
//   - It has no timeout and no retry.
//   - It stops at the first response whose status is not 200.
//   - It exits 0 whether or not it changed files.
//
// The deployed client logs to syslog (facility daemon, priority info) and exits
// when syslog cannot be reached. This fixture logs the same events to standard
// error instead.
package main

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"path/filepath"
	"strings"
)

// missingFileHash is the hash sent for a local file that cannot be read.
const missingFileHash = "0000000000000000000000000000000000000000000000000000000000000000"

// setFiles contains the files of a domain that the client hashes and downloads,
// in download order.
var setFiles = []string{"fullchain.pem", "privkey.pem", "chain.pem"}

// Hashes contains the SHA-256 digests, in lower-case hex, of the three files
// of a certificate set.
type Hashes struct {
	FullchainHash string `json:"fullchain_hash"`
	PrivkeyHash   string `json:"privkey_hash"`
	ChainHash     string `json:"chain_hash"`
}

// CheckRequest is the body of POST /api/check.
type CheckRequest struct {
	Domain string `json:"domain"`
	Hashes Hashes `json:"hashes"`
}

// CheckResponse contains the fields of a check response that the deployed
// client reads, which leaves out server_hashes.
type CheckResponse struct {
	UpdateRequired bool   `json:"update_required"`
	Message        string `json:"message"`
}

func main() {
	serverURL := flag.String("server", "", "server URL, for example https://certs.example.net:8443 (required)")
	dest := flag.String("dest", "/etc/letsencrypt/live", "directory that receives <domain>/fullchain.pem, privkey.pem and chain.pem")
	certFile := flag.String("cert", "tls/client.crt", "client certificate file (PEM)")
	keyFile := flag.String("key", "tls/client.key", "client private key file (PEM)")
	caFile := flag.String("ca", "tls/ca.crt", "CA bundle that the server certificate must chain to (PEM)")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: %s -server URL [flags] DOMAIN...\n", os.Args[0])
		flag.PrintDefaults()
	}
	flag.Parse()
	// NOTE: the wire contract gives no default server URL for the deployed
	// client, so the fixture requires -server.
	if *serverURL == "" || flag.NArg() == 0 {
		flag.Usage()
		os.Exit(2)
	}

	certificate, err := tls.LoadX509KeyPair(*certFile, *keyFile)
	if err != nil {
		log.Fatalf("loading the client certificate %s and key %s failed: %v", *certFile, *keyFile, err)
	}
	caPEM, err := os.ReadFile(*caFile)
	if err != nil {
		log.Fatalf("reading the CA bundle failed: %v", err)
	}
	rootCAs := x509.NewCertPool()
	if !rootCAs.AppendCertsFromPEM(caPEM) {
		log.Fatalf("the CA bundle %s contains no PEM certificate", *caFile)
	}
	// The transport takes the server name to verify from the URL's host.
	// A custom TLS configuration turns off HTTP/2, so requests share one
	// HTTP/1.1 keep-alive connection.
	client := &http.Client{
		Transport: &http.Transport{
			TLSClientConfig: &tls.Config{
				Certificates: []tls.Certificate{certificate},
				RootCAs:      rootCAs,
				MinVersion:   tls.VersionTLS12,
			},
		},
	}

	base := strings.TrimSuffix(*serverURL, "/")
	for _, domain := range flag.Args() {
		syncDomain(client, base, *dest, domain)
	}
}

// syncDomain checks one domain and downloads its files when the server has
// others. It exits the process on any failure.
func syncDomain(client *http.Client, base, dest, domain string) {
	dir := filepath.Join(dest, domain)
	request := CheckRequest{Domain: domain, Hashes: localHashes(dir)}
	body, err := json.Marshal(request)
	if err != nil {
		log.Fatalf("encoding the check request for %s failed: %v", domain, err)
	}
	response, err := client.Post(base+"/api/check", "application/json", bytes.NewReader(body))
	if err != nil {
		log.Fatalf("check for %s failed: %v", domain, err)
	}
	responseBody, err := io.ReadAll(response.Body)
	response.Body.Close()
	if err != nil {
		log.Fatalf("reading the check response for %s failed: %v", domain, err)
	}
	if response.StatusCode != http.StatusOK {
		log.Fatalf("check for %s failed: server returned %s: %s", domain, response.Status, strings.TrimSpace(string(responseBody)))
	}
	var check CheckResponse
	if err := json.Unmarshal(responseBody, &check); err != nil {
		log.Fatalf("decoding the check response for %s failed: %v", domain, err)
	}
	log.Printf("check for %s: %s", domain, check.Message)
	if !check.UpdateRequired {
		return
	}

	if err := os.MkdirAll(dir, 0o755); err != nil {
		log.Fatalf("creating %s failed: %v", dir, err)
	}
	for _, name := range setFiles {
		downloadFile(client, base, domain, name, filepath.Join(dir, name))
	}
}

// downloadFile fetches one file and writes it over the local copy in place.
func downloadFile(client *http.Client, base, domain, name, path string) {
	response, err := client.Get(fmt.Sprintf("%s/download/%s/%s", base, domain, name))
	if err != nil {
		log.Fatalf("download of %s for %s failed: %v", name, domain, err)
	}
	data, err := io.ReadAll(response.Body)
	response.Body.Close()
	if err != nil {
		log.Fatalf("reading %s for %s failed: %v", name, domain, err)
	}
	if response.StatusCode != http.StatusOK {
		log.Fatalf("download of %s for %s failed: server returned %s: %s", name, domain, response.Status, strings.TrimSpace(string(data)))
	}
	// os.WriteFile truncates an existing file and keeps its mode, because it
	// applies 0600 only to a file that it creates.
	if err := os.WriteFile(path, data, 0o600); err != nil {
		log.Fatalf("writing %s failed: %v", path, err)
	}
	log.Printf("saved %s (%d bytes)", path, len(data))
}

// localHashes hashes the local copies of a domain's files.
func localHashes(dir string) Hashes {
	hash := func(name string) string {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return missingFileHash
		}
		sum := sha256.Sum256(data)
		return hex.EncodeToString(sum[:])
	}
	return Hashes{
		FullchainHash: hash("fullchain.pem"),
		PrivkeyHash:   hash("privkey.pem"),
		ChainHash:     hash("chain.pem"),
	}
}
