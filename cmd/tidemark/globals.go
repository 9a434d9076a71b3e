package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/alecthomas/kong"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/tidemark/tidemark/config"
)

// Globals are the flags every command takes.
type Globals struct {
	ConfigFile kong.ConfigFlag `name:"config" type:"path" help:"YAML configuration file; keys are flag names (pg-url, nats-url, …)."`
	config.Postgres
	config.NATS
	config.Log
}

// Logger builds the slog logger the flags ask for, writing to w.
func (g *Globals) Logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(g.Log.Level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: level}
	if g.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return slog.New(slog.NewTextHandler(w, opts)), nil
}

// PGConfig parses --pg-url into a pool config, with the SQL tracer when --log-sql is on.
func (g *Globals) PGConfig(log *slog.Logger) (*pgxpool.Config, error) {
	if err := g.Postgres.Validate(); err != nil {
		return nil, err
	}
	cfg, err := pgxpool.ParseConfig(g.Postgres.URL)
	if err != nil {
		return nil, fmt.Errorf("parse --pg-url: %w", err)
	}
	cfg.ConnConfig.RuntimeParams["application_name"] = "tidemark"
	if g.Log.SQL {
		cfg.ConnConfig.Tracer = &sqlTracer{log: log}
	}
	return cfg, nil
}

// Pool connects to PostgreSQL; the caller closes the pool.
func (g *Globals) Pool(ctx context.Context, log *slog.Logger) (*pgxpool.Pool, error) {
	cfg, err := g.PGConfig(log)
	if err != nil {
		return nil, err
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to postgres: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect to postgres %s: %w", redactURL(g.Postgres.URL), err)
	}
	return pool, nil
}

// NATSConn connects to NATS with the credentials and TLS settings given, reconnecting for ever:
// long-running commands pause while NATS is away rather than fail.
func (g *Globals) NATSConn(log *slog.Logger, name string) (*nats.Conn, error) {
	if err := g.NATS.Validate(); err != nil {
		return nil, err
	}
	opts := []nats.Option{
		nats.Name("tidemark " + name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.RetryOnFailedConnect(false),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) { log.Info("nats reconnected", "url", c.ConnectedUrlRedacted()) }),
	}
	if g.NATS.Creds != "" {
		opts = append(opts, nats.UserCredentials(g.NATS.Creds))
	}
	if g.NATS.CA != "" || g.NATS.Cert != "" {
		tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if g.NATS.CA != "" {
			pem, err := os.ReadFile(g.NATS.CA)
			if err != nil {
				return nil, fmt.Errorf("read --nats-ca: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("--nats-ca %s: no certificates found", g.NATS.CA)
			}
			tlsCfg.RootCAs = pool
		}
		if g.NATS.Cert != "" {
			cert, err := tls.LoadX509KeyPair(g.NATS.Cert, g.NATS.Key)
			if err != nil {
				return nil, fmt.Errorf("load --nats-cert/--nats-key: %w", err)
			}
			tlsCfg.Certificates = []tls.Certificate{cert}
		}
		opts = append(opts, nats.Secure(tlsCfg))
	}
	nc, err := nats.Connect(g.NATS.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to nats %s: %w", g.NATS.URL, err)
	}
	return nc, nil
}

// redactURL hides the password of a connection URL.
func redactURL(s string) string {
	cfg, err := pgx.ParseConfig(s)
	if err != nil || cfg.Password == "" {
		return s
	}
	return strings.ReplaceAll(s, cfg.Password, "xxxxx")
}

// sqlTracer logs every statement with its duration (--log-sql).
type sqlTracer struct{ log *slog.Logger }

type traceKey struct{}

type traceStart struct {
	sql   string
	start time.Time
}

func (t *sqlTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	return context.WithValue(ctx, traceKey{}, traceStart{sql: data.SQL, start: time.Now()})
}

func (t *sqlTracer) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryEndData) {
	st, _ := ctx.Value(traceKey{}).(traceStart)
	attrs := []any{"sql", strings.Join(strings.Fields(st.sql), " "), "duration", time.Since(st.start), "rows", data.CommandTag.RowsAffected()}
	if data.Err != nil {
		attrs = append(attrs, "err", data.Err)
	}
	t.log.Debug("sql", attrs...)
}
