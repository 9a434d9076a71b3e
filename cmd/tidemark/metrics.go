package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/tidemark/tidemark/health"
)

// registerStateCollector adds the catalogue's state (vectors, snapshots: health.Collector) to
// reg, on a connection of its own so a slow scrape never holds one the command needs. With
// consumer set it also connects to NATS, for the stale vectors. close releases both.
func registerStateCollector(g *Globals, log *slog.Logger, reg prometheus.Registerer, opts health.CollectorOptions, consumer string) (closeFn func(), err error) {
	cfg, err := g.PGConfig(log)
	if err != nil {
		return nil, err
	}
	cfg.MaxConns = 1
	// Connects on the first scrape, so PostgreSQL may come up later.
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to postgres for metrics: %w", err)
	}
	closeFn = pool.Close
	if consumer != "" {
		nc, err := g.NATSConn(log, "metrics")
		if err != nil {
			pool.Close()
			return nil, err
		}
		js, err := jetstream.New(nc)
		if err != nil {
			nc.Close()
			pool.Close()
			return nil, fmt.Errorf("jetstream: %w", err)
		}
		opts.JS, opts.Consumer = js, consumer
		closeFn = func() {
			nc.Close()
			pool.Close()
		}
	}
	if err := reg.Register(health.NewCollector(pool, opts, log)); err != nil {
		closeFn()
		return nil, fmt.Errorf("register the state metrics: %w", err)
	}
	return closeFn, nil
}
