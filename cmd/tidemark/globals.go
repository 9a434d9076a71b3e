package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/tidemark/tidemark/config"
)

// Globals are the flags every command takes.
type Globals struct {
	ConfigFile config.FileFlag `name:"config" placeholder:"FILE" help:"YAML configuration file; keys are flag names (pg-url, nats-url, …). Precedence: flags > TIDEMARK_* environment > file > defaults."`
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
	// An application_name in --pg-url wins, so an operator (or the benchmark) can tell the
	// sessions of each command apart in pg_stat_activity.
	if _, ok := cfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		cfg.ConnConfig.RuntimeParams["application_name"] = "tidemark"
	}
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
		return nil, fmt.Errorf("connect to postgres %s: %w", config.MaskURL(g.Postgres.URL), err)
	}
	return pool, nil
}

// serviceConnectTimeout is how long replicate and encode give NATS to answer their first
// connect, against nats.go's 2s for the other commands: a service started beside a busy or
// starting server should wait for it, not exit.
const serviceConnectTimeout = 10 * time.Second

// NATSConn connects to NATS with the credentials and TLS settings given, reconnecting for ever:
// long-running commands pause while NATS is away rather than fail. extra options go last.
func (g *Globals) NATSConn(log *slog.Logger, name string, extra ...nats.Option) (*nats.Conn, error) {
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
	tlsCfg, err := g.NATS.TLSConfig()
	if err != nil {
		return nil, err
	}
	if tlsCfg != nil {
		opts = append(opts, nats.Secure(tlsCfg))
	}
	nc, err := nats.Connect(g.NATS.URL, append(opts, extra...)...)
	if err != nil {
		return nil, fmt.Errorf("connect to nats %s: %w", config.MaskURL(g.NATS.URL), err)
	}
	return nc, nil
}

// sqlTracer logs every statement with its duration (--log-sql): queries and Exec, each query of
// a batch, COPY and prepares. It logs at info level, since asking for it is the point.
type sqlTracer struct{ log *slog.Logger }

var (
	_ pgx.QueryTracer    = (*sqlTracer)(nil)
	_ pgx.BatchTracer    = (*sqlTracer)(nil)
	_ pgx.CopyFromTracer = (*sqlTracer)(nil)
	_ pgx.PrepareTracer  = (*sqlTracer)(nil)
)

type traceKey struct{}

type traceStart struct {
	sql   string
	start time.Time
}

func oneLine(sql string) string { return strings.Join(strings.Fields(sql), " ") }

func (t *sqlTracer) begin(ctx context.Context, sql string) context.Context {
	return context.WithValue(ctx, traceKey{}, &traceStart{sql: sql, start: time.Now()})
}

func (t *sqlTracer) end(ctx context.Context, msg string, rows int64, err error, extra ...any) {
	st, _ := ctx.Value(traceKey{}).(*traceStart)
	if st == nil {
		st = &traceStart{start: time.Now()}
	}
	attrs := append([]any{"sql", oneLine(st.sql), "duration", time.Since(st.start), "rows", rows}, extra...)
	if err != nil {
		attrs = append(attrs, "err", err)
	}
	t.log.Info(msg, attrs...)
}

func (t *sqlTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	return t.begin(ctx, data.SQL)
}

func (t *sqlTracer) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryEndData) {
	t.end(ctx, "sql", data.CommandTag.RowsAffected(), data.Err)
}

func (t *sqlTracer) TraceBatchStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceBatchStartData) context.Context {
	return t.begin(ctx, "")
}

// TraceBatchQuery logs each query of a batch with the time since the previous one finished,
// which is when its result arrived.
func (t *sqlTracer) TraceBatchQuery(ctx context.Context, _ *pgx.Conn, data pgx.TraceBatchQueryData) {
	st, _ := ctx.Value(traceKey{}).(*traceStart)
	if st == nil {
		return
	}
	st.sql = data.SQL
	t.end(ctx, "sql", data.CommandTag.RowsAffected(), data.Err, "batch", true)
	st.start = time.Now()
}

func (t *sqlTracer) TraceBatchEnd(ctx context.Context, _ *pgx.Conn, data pgx.TraceBatchEndData) {
	if data.Err != nil {
		t.end(ctx, "sql batch", 0, data.Err)
	}
}

func (t *sqlTracer) TraceCopyFromStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceCopyFromStartData) context.Context {
	cols := make([]string, len(data.ColumnNames))
	for i, c := range data.ColumnNames {
		cols[i] = pgx.Identifier{c}.Sanitize()
	}
	return t.begin(ctx, fmt.Sprintf("COPY %s (%s) FROM STDIN", data.TableName.Sanitize(), strings.Join(cols, ", ")))
}

func (t *sqlTracer) TraceCopyFromEnd(ctx context.Context, _ *pgx.Conn, data pgx.TraceCopyFromEndData) {
	t.end(ctx, "sql", data.CommandTag.RowsAffected(), data.Err)
}

func (t *sqlTracer) TracePrepareStart(ctx context.Context, _ *pgx.Conn, data pgx.TracePrepareStartData) context.Context {
	return t.begin(ctx, data.SQL)
}

func (t *sqlTracer) TracePrepareEnd(ctx context.Context, _ *pgx.Conn, data pgx.TracePrepareEndData) {
	t.end(ctx, "sql prepare", 0, data.Err)
}
