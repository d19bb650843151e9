package broker

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// certHolder holds the certificate of the TLS listeners. Handshakes read
// it through GetCertificate, so a reload applies to new connections while
// established ones go on undisturbed.
type certHolder struct {
	certFile, keyFile string
	log               *slog.Logger

	mu   sync.Mutex // serializes loads
	cert atomic.Pointer[tls.Certificate]
}

// load reads and checks the key pair; on success it replaces the
// certificate, on failure it keeps the previous one.
func (h *certHolder) load() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	cert, err := loadKeyPair(h.certFile, h.keyFile)
	if err != nil {
		return err
	}
	h.cert.Store(cert)
	leaf := cert.Leaf
	h.log.Info("tls certificate loaded", "file", h.certFile, "subject", leaf.Subject.String(),
		"dns_names", leaf.DNSNames, "not_after", leaf.NotAfter.UTC().Format(time.RFC3339))
	if time.Now().After(leaf.NotAfter) {
		h.log.Warn("tls certificate has expired; clients will refuse it", "file", h.certFile,
			"not_after", leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return nil
}

func (h *certHolder) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return h.cert.Load(), nil
}

// loadKeyPair reads a PEM certificate (chain) and its private key. Errors
// name the file at fault.
func loadKeyPair(certFile, keyFile string) (*tls.Certificate, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("tls certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("tls key: %w", err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("tls certificate %s with key %s: %w", certFile, keyFile, err)
	}
	if cert.Leaf == nil { // GODEBUG=x509keypairleaf=0
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("tls certificate %s: %w", certFile, err)
		}
	}
	return &cert, nil
}

// tlsConfig is the configuration of the TLS listeners: TLS 1.2 or later,
// with the held certificate. nextProtos is the ALPN list ("http/1.1" for
// wss, so that no client negotiates HTTP/2, which cannot upgrade).
func (h *certHolder) tlsConfig(nextProtos ...string) *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: h.get,
		NextProtos:     nextProtos,
	}
}

// TLSConfig returns a TLS configuration (1.2 or later) that serves the
// broker's certificate, for another listener of the same server (feedmq's
// HTTPS): ReloadCertificate renews it there too. nextProtos is its ALPN
// list. It is nil when no certificate was configured, and before Open.
func (s *Server) TLSConfig(nextProtos ...string) *tls.Config {
	if s.certs == nil {
		return nil
	}
	return s.certs.tlsConfig(nextProtos...)
}

// errNoCertificate is returned by ReloadCertificate without TLS listeners.
var errNoCertificate = errors.New("broker: no TLS certificate configured")

// ReloadCertificate reads the certificate and key files again (feedmq
// serve calls it on SIGHUP). New TLS connections get the new certificate;
// established ones are not touched. When the new pair cannot be read or
// does not match, the previous certificate stays in use and the error says
// why.
func (s *Server) ReloadCertificate() error {
	if s.certs == nil {
		return errNoCertificate
	}
	if err := s.certs.load(); err != nil {
		return fmt.Errorf("broker: reload: %w; keeping the previous certificate", err)
	}
	return nil
}
