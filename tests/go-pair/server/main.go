// Command acme_dl_server is a test fixture that re-creates the deployed Go
// acme_dl_server from its wire contract, so that acme-dl's interoperability
// tests can run against it. It is not the deployed code, whose source the
// project does not have.
//
// The fixture keeps the deployed server's known weaknesses on purpose:
//   - Any client with a certificate from the CA may download any domain.
//   - The domain is cut to its last path component with filepath.Base.
//   - An unknown domain returns 500.
//   - The files are hashed again on every request.
//
// The deployed server logs to syslog (facility daemon, priority info) and exits
// when syslog cannot be reached. This fixture logs the same events to standard
// error instead, and prints "listening on ADDRESS" once the listener is bound,
// so that a test can use -listen 127.0.0.1:0 and read the port.
package main

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
)

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

// CheckResponse is the body of a 200 response to POST /api/check.
type CheckResponse struct {
	UpdateRequired bool    `json:"update_required"`
	Message        string  `json:"message"`
	ServerHashes   *Hashes `json:"server_hashes,omitempty"`
}

// allowedFiles contains the file names that GET /download/<domain>/<filename>
// serves.
var allowedFiles = map[string]bool{
	"fullchain.pem": true,
	"privkey.pem":   true,
	"chain.pem":     true,
}

type server struct {
	certbotDir string
}

func main() {
	listen := flag.String("listen", ":8443", "address and TCP port to listen on")
	certbotDir := flag.String("certbot-dir", "/etc/letsencrypt", "Certbot directory that contains live/<domain>/")
	certFile := flag.String("cert", "tls/server.crt", "server certificate file (PEM)")
	keyFile := flag.String("key", "tls/server.key", "server private key file (PEM)")
	caFile := flag.String("ca", "tls/ca.crt", "CA bundle that client certificates must chain to (PEM)")
	flag.Parse()

	certificate, err := tls.LoadX509KeyPair(*certFile, *keyFile)
	if err != nil {
		log.Fatalf("loading the server certificate %s and key %s failed: %v", *certFile, *keyFile, err)
	}
	caPEM, err := os.ReadFile(*caFile)
	if err != nil {
		log.Fatalf("reading the CA bundle failed: %v", err)
	}
	clientCAs := x509.NewCertPool()
	if !clientCAs.AppendCertsFromPEM(caPEM) {
		log.Fatalf("the CA bundle %s contains no PEM certificate", *caFile)
	}

	s := &server{certbotDir: *certbotDir}
	mux := http.NewServeMux()
	mux.HandleFunc("/api/check", s.handleCheck)
	mux.HandleFunc("/download/", s.handleDownload)
	httpServer := &http.Server{
		Handler: mux,
		TLSConfig: &tls.Config{
			Certificates: []tls.Certificate{certificate},
			ClientCAs:    clientCAs,
			ClientAuth:   tls.RequireAndVerifyClientCert,
			MinVersion:   tls.VersionTLS12,
		},
	}

	listener, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatalf("listening on %s failed: %v", *listen, err)
	}
	log.Printf("listening on %s", listener.Addr())
	// ServeTLS offers HTTP/2 and HTTP/1.1 through ALPN, as ListenAndServeTLS does.
	if err := httpServer.ServeTLS(listener, "", ""); err != nil {
		log.Fatalf("serving failed: %v", err)
	}
}

// handleCheck compares the client's hashes with those of the domain's files.
func (s *server) handleCheck(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		log.Printf("check from %s rejected: method %s not allowed", r.RemoteAddr, r.Method)
		http.Error(w, "Method not allowed", http.StatusMethodNotAllowed)
		return
	}
	var request CheckRequest
	if err := json.NewDecoder(r.Body).Decode(&request); err != nil {
		log.Printf("check from %s rejected: invalid JSON body: %v", r.RemoteAddr, err)
		http.Error(w, "Invalid request body", http.StatusBadRequest)
		return
	}

	domain := filepath.Base(request.Domain)
	serverHashes, err := s.hashDomain(domain)
	if err != nil {
		log.Printf("check from %s for domain %s failed: %v", r.RemoteAddr, domain, err)
		http.Error(w, "Failed to read certificate files", http.StatusInternalServerError)
		return
	}

	response := CheckResponse{
		UpdateRequired: false,
		Message:        "Certificates are up to date.",
	}
	if request.Hashes != *serverHashes {
		response = CheckResponse{
			UpdateRequired: true,
			Message:        "Update required: Certificate hashes differ.",
			ServerHashes:   serverHashes,
		}
	}
	log.Printf("check from %s for domain %s: update_required=%t", r.RemoteAddr, domain, response.UpdateRequired)
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(w).Encode(response); err != nil {
		log.Printf("writing the check response to %s failed: %v", r.RemoteAddr, err)
	}
}

// handleDownload serves one file of a domain as a static file server does.
func (s *server) handleDownload(w http.ResponseWriter, r *http.Request) {
	segments := strings.Split(strings.TrimPrefix(r.URL.Path, "/download/"), "/")
	if len(segments) != 2 {
		log.Printf("download from %s rejected: path %q does not have two segments", r.RemoteAddr, r.URL.Path)
		http.Error(w, "Invalid download path", http.StatusBadRequest)
		return
	}
	domain := filepath.Base(segments[0])
	fileName := segments[1]
	if !allowedFiles[fileName] {
		log.Printf("download from %s rejected: file name %q not allowed", r.RemoteAddr, fileName)
		http.Error(w, "Invalid file name", http.StatusBadRequest)
		return
	}

	path := filepath.Join(s.certbotDir, "live", domain, fileName)
	recorder := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	http.ServeFile(recorder, r, path)
	log.Printf("download of %s for domain %s from %s: status %d", fileName, domain, r.RemoteAddr, recorder.status)
}

// statusRecorder keeps the status code that a handler sends, for the log.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (recorder *statusRecorder) WriteHeader(status int) {
	recorder.status = status
	recorder.ResponseWriter.WriteHeader(status)
}

// hashDomain hashes the three files of a domain's live directory.
func (s *server) hashDomain(domain string) (*Hashes, error) {
	dir := filepath.Join(s.certbotDir, "live", domain)
	var hashes Hashes
	targets := []struct {
		name string
		hash *string
	}{
		{"fullchain.pem", &hashes.FullchainHash},
		{"privkey.pem", &hashes.PrivkeyHash},
		{"chain.pem", &hashes.ChainHash},
	}
	for _, target := range targets {
		data, err := os.ReadFile(filepath.Join(dir, target.name))
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", target.name, err)
		}
		sum := sha256.Sum256(data)
		*target.hash = hex.EncodeToString(sum[:])
	}
	return &hashes, nil
}
