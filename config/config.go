package config

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// Postgres is how tidemark reaches the source database.
type Postgres struct {
	URL string `name:"pg-url" default:"postgres://postgres@localhost:5432/postgres" help:"PostgreSQL connection URL (sslmode and other libpq parameters work)."`
}

// Validate checks that the URL parses.
func (p Postgres) Validate() error {
	if p.URL == "" {
		return errors.New("--pg-url is empty")
	}
	if strings.Contains(p.URL, "://") {
		if _, err := url.Parse(p.URL); err != nil {
			return fmt.Errorf("--pg-url: %w", err)
		}
	}
	return nil
}

// NATS is how tidemark reaches NATS JetStream.
type NATS struct {
	URL   string `name:"nats-url" default:"nats://127.0.0.1:4222" help:"NATS server URL(s), comma-separated."`
	Creds string `name:"nats-creds" type:"path" help:"NATS credentials file (JWT + NKey)."`
	CA    string `name:"nats-ca" type:"path" help:"CA certificate for NATS TLS."`
	Cert  string `name:"nats-cert" type:"path" help:"Client certificate for NATS mutual TLS."`
	Key   string `name:"nats-key" type:"path" help:"Client key for NATS mutual TLS."`
}

// Validate checks that certificate and key come together.
func (n NATS) Validate() error {
	if n.URL == "" {
		return errors.New("--nats-url is empty")
	}
	if (n.Cert == "") != (n.Key == "") {
		return errors.New("--nats-cert and --nats-key go together")
	}
	return nil
}

// Log selects the log output.
type Log struct {
	Level  string `name:"log-level" default:"info" enum:"debug,info,warn,error" help:"Log level: debug, info, warn, error."`
	Format string `name:"log-format" default:"text" enum:"text,json" help:"Log format: text or json."`
	SQL    bool   `name:"log-sql" help:"Log every SQL statement with its duration (info level)."`
}
