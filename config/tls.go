package config

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
)

// TLSConfig builds the TLS settings for NATS from --nats-ca, --nats-cert and --nats-key, or
// nil when none is given (a tls:// URL then verifies against the system roots).
func (n NATS) TLSConfig() (*tls.Config, error) {
	if n.CA == "" && n.Cert == "" && n.Key == "" {
		return nil, nil
	}
	if err := n.Validate(); err != nil {
		return nil, err
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if n.CA != "" {
		pem, err := os.ReadFile(n.CA)
		if err != nil {
			return nil, fmt.Errorf("read --nats-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--nats-ca %s: no PEM certificates found", n.CA)
		}
		cfg.RootCAs = pool
	}
	if n.Cert != "" {
		cert, err := tls.LoadX509KeyPair(n.Cert, n.Key)
		if err != nil {
			return nil, fmt.Errorf("load --nats-cert/--nats-key: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}
