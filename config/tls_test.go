package config_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/tidemark/tidemark/config"
	"github.com/tidemark/tidemark/internal/testenv"
)

// pki is a throw-away CA with a server and a client certificate, written as PEM files.
type pki struct {
	dir                                  string
	ca, serverCert, serverKey, cert, key string
	caCert                               *x509.Certificate
	caKey                                *ecdsa.PrivateKey
	otherCA                              string // a CA that signed nothing here
	serverTLS                            *tls.Config
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	p := &pki{dir: t.TempDir()}
	p.caCert, p.caKey, p.ca = p.makeCA(t, "ca")
	_, _, p.otherCA = p.makeCA(t, "other-ca")
	p.serverCert, p.serverKey = p.issue(t, "server", x509.ExtKeyUsageServerAuth)
	p.cert, p.key = p.issue(t, "client", x509.ExtKeyUsageClientAuth)
	serverPair, err := tls.LoadX509KeyPair(p.serverCert, p.serverKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(p.caCert)
	p.serverTLS = &tls.Config{
		Certificates: []tls.Certificate{serverPair},
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS12,
	}
	return p
}

func (p *pki) write(t *testing.T, name, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(p.dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func (p *pki) makeCA(t *testing.T, name string) (*x509.Certificate, *ecdsa.PrivateKey, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key, p.write(t, name+".pem", "CERTIFICATE", der)
}

func (p *pki) issue(t *testing.T, name string, usage x509.ExtKeyUsage) (certPath, keyPath string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.caCert, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return p.write(t, name+".pem", "CERTIFICATE", der), p.write(t, name+"-key.pem", "PRIVATE KEY", keyDER)
}

func TestNATSTLSConfig(t *testing.T) {
	p := newPKI(t)
	garbage := filepath.Join(p.dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		n       config.NATS
		wantNil bool
		wantErr string
		certs   int
	}{
		{name: "no TLS flags", n: config.NATS{URL: "nats://x"}, wantNil: true},
		{name: "CA only", n: config.NATS{URL: "tls://x", CA: p.ca}},
		{name: "mutual TLS", n: config.NATS{URL: "tls://x", CA: p.ca, Cert: p.cert, Key: p.key}, certs: 1},
		{name: "cert without key", n: config.NATS{URL: "x", Cert: p.cert}, wantErr: "go together"},
		{name: "missing CA file", n: config.NATS{URL: "x", CA: filepath.Join(p.dir, "nope.pem")}, wantErr: "read --nats-ca"},
		{name: "CA file without certificates", n: config.NATS{URL: "x", CA: garbage}, wantErr: "no PEM certificates"},
		{name: "key of another certificate", n: config.NATS{URL: "x", Cert: p.cert, Key: p.serverKey}, wantErr: "--nats-cert/--nats-key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := tt.n.TLSConfig()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (cfg == nil) != tt.wantNil {
				t.Fatalf("config = %v, want nil: %v", cfg, tt.wantNil)
			}
			if cfg != nil && len(cfg.Certificates) != tt.certs {
				t.Fatalf("%d client certificates, want %d", len(cfg.Certificates), tt.certs)
			}
		})
	}
}

// TestNATSMutualTLS connects to an embedded nats-server that demands a client certificate.
func TestNATSMutualTLS(t *testing.T) {
	p := newPKI(t)
	srv := testenv.NATSServer(t, server.Options{TLS: true, TLSVerify: true, TLSConfig: p.serverTLS, TLSTimeout: 5})
	url := srv.ClientURL()
	connect := func(n config.NATS) error {
		cfg, err := n.TLSConfig()
		if err != nil {
			return err
		}
		opts := []nats.Option{nats.MaxReconnects(0), nats.Timeout(5 * time.Second)}
		if cfg != nil {
			opts = append(opts, nats.Secure(cfg))
		}
		nc, err := nats.Connect(url, opts...)
		if err != nil {
			return err
		}
		defer nc.Close()
		return nc.Flush()
	}
	if err := connect(config.NATS{URL: url, CA: p.ca, Cert: p.cert, Key: p.key}); err != nil {
		t.Fatalf("mutual TLS with the right CA and client certificate: %v", err)
	}
	if err := connect(config.NATS{URL: url, CA: p.ca}); err == nil {
		t.Fatal("connected without a client certificate to a server that requires one")
	}
	if err := connect(config.NATS{URL: url, CA: p.otherCA, Cert: p.cert, Key: p.key}); err == nil {
		t.Fatal("connected although the server certificate is not signed by --nats-ca")
	}
}
