package replication_test

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/tidemark/tidemark/replication"
)

// A negative setting is an error that names it, never silently replaced by the default.
func TestNewRejectsNegativeSettings(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  func(*replication.Config)
		want string
	}{
		{"status interval", func(c *replication.Config) { c.StatusInterval = -time.Second }, "--status-interval -1s"},
		{"heartbeat", func(c *replication.Config) { c.Heartbeat = -time.Second }, "--heartbeat -1s"},
		{"flush commits", func(c *replication.Config) { c.FlushCommits = -1 }, "FlushCommits -1"},
		{"shutdown timeout", func(c *replication.Config) { c.ShutdownTimeout = -time.Second }, "ShutdownTimeout -1s"},
		{"max backoff", func(c *replication.Config) { c.MaxBackoff = -time.Second }, "MaxBackoff -1s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := replication.Config{Slot: "s", Publication: "p"}
			tc.set(&cfg)
			_, err := replication.New(cfg, nil, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v, want an error naming %q", err, tc.want)
			}
		})
	}
	// Zero is the default (and no heartbeat), not an error.
	if _, err := replication.New(replication.Config{Slot: "s", Publication: "p"}, nil, slog.New(slog.DiscardHandler), prometheus.NewRegistry()); err != nil {
		t.Fatalf("New with zero settings: %v", err)
	}
}
