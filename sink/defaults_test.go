package sink_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/tidemark/tidemark/sink"
)

// A negative setting is an error that names it, never silently replaced by the default; it is
// found before anything is connected to.
func TestNegativeSettingsAreErrors(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		call func() error
		want string
	}{
		{"max in flight", func() error {
			_, err := sink.NewPublisher(nil, sink.Options{MaxInFlight: -1}, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
			return err
		}, "--max-in-flight -1"},
		{"ack timeout", func() error {
			_, err := sink.NewPublisher(nil, sink.Options{AckTimeout: -time.Second}, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
			return err
		}, "--ack-timeout -1s"},
		{"max scan", func() error {
			_, err := sink.NewPublisher(nil, sink.Options{MaxScan: -1}, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
			return err
		}, "MaxScan -1"},
		{"dedup window", func() error {
			_, err := sink.EnsureStream(ctx, nil, sink.StreamConfig{Duplicates: -time.Minute})
			return err
		}, "--dedup-window -1m0s"},
		{"stream replicas", func() error {
			_, err := sink.EnsureStream(ctx, nil, sink.StreamConfig{Replicas: -1})
			return err
		}, "--replicas -1"},
		{"checkpoint replicas", func() error {
			_, err := sink.EnsureCheckpoints(ctx, nil, -1)
			return err
		}, "--replicas -1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.call(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("%v, want an error naming %q", err, tc.want)
			}
		})
	}
}
