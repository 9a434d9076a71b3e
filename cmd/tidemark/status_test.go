package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/tidemark/tidemark/health"
	"github.com/tidemark/tidemark/internal/testenv"
)

// statusJSON is what status --json promises: these top-level keys, always present.
type statusJSON struct {
	Slot *struct {
		Name         string `json:"name"`
		Active       bool   `json:"active"`
		ConfirmedLSN string `json:"confirmed_lsn"`
		LagBytes     int64  `json:"lag_bytes"`
		WALStatus    string `json:"wal_status"`
	} `json:"slot"`
	Checkpoint *struct {
		LSN string `json:"lsn"`
	} `json:"checkpoint"`
	Stream *struct {
		Name     string `json:"name"`
		Messages uint64 `json:"messages"`
		Bytes    uint64 `json:"bytes"`
		FirstSeq uint64 `json:"first_seq"`
		LastSeq  uint64 `json:"last_seq"`
	} `json:"stream"`
	Consumers []struct {
		Name        string `json:"name"`
		Pending     uint64 `json:"pending"`
		AckPending  int    `json:"ack_pending"`
		Redelivered int    `json:"redelivered"`
	} `json:"consumers"`
	Vectors *struct {
		Live    int64 `json:"live"`
		Deleted int64 `json:"deleted"`
		Models  []struct {
			Model   string               `json:"model"`
			Live    int64                `json:"live"`
			Deleted int64                `json:"deleted"`
			Index   *health.IndexSummary `json:"index"`
		} `json:"models"`
	} `json:"vectors"`
	Healthy  bool     `json:"healthy"`
	Problems []string `json:"problems"`
}

func runStatus(t *testing.T, pgURL, natsURL string, args ...string) (statusJSON, map[string]json.RawMessage, int, string) {
	t.Helper()
	stdout, stderr, code := runTidemark(t, pgURL, natsURL, append([]string{"status", "--json"}, args...)...)
	var st statusJSON
	var raw map[string]json.RawMessage
	if err := json.Unmarshal([]byte(stdout), &st); err != nil {
		t.Fatalf("status --json stdout is not JSON: %v\nstdout:\n%s\nstderr:\n%s", err, stdout, stderr)
	}
	_ = json.Unmarshal([]byte(stdout), &raw)
	return st, raw, code, stderr
}

// TestStatusStoppedPipeline: the slot exists but nobody reads it, the stream holds events and
// no consumer exists yet. That is healthy while the slot's lag is small, unhealthy above --lag-max.
func TestStatusStoppedPipeline(t *testing.T) {
	ctx := testenv.Context(t, 2*time.Minute)
	dbURL := testenv.Database(t)
	pool := testenv.Pool(t, dbURL)
	for _, sql := range []string{
		"SELECT pg_create_logical_replication_slot('tidemark', 'pgoutput')",
		// The columns status reads; the encoder's migration defines the real table.
		`CREATE TABLE product_embeddings (supplier_id int, product_id bigint, model text, deleted bool NOT NULL DEFAULT false)`,
		`INSERT INTO product_embeddings VALUES (1, 1, 'hash-64', false), (1, 2, 'hash-64', false), (1, 3, 'hash-64', true), (1, 1, 'openai', false)`,
	} {
		if _, err := pool.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	t.Cleanup(func() { _, _ = pool.Exec(context.Background(), "SELECT pg_drop_replication_slot('tidemark')") })
	var confirmed string
	if err := pool.QueryRow(ctx, "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = 'tidemark'").Scan(&confirmed); err != nil {
		t.Fatal(err)
	}

	n := testenv.NATS(t)
	js := testenv.JetStream(t, n.URL())
	stream, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "PRODUCTS", Subjects: []string{"products.>"}, Duplicates: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if _, err := js.Publish(ctx, "products.1.insert", []byte(fmt.Sprintf(`{"n":%d}`, i))); err != nil {
			t.Fatal(err)
		}
	}
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "tidemark_checkpoints"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.PutString(ctx, "tidemark", confirmed); err != nil {
		t.Fatal(err)
	}

	st, raw, code, stderr := runStatus(t, dbURL, n.URL())
	if code != 0 || !st.Healthy || len(st.Problems) != 0 {
		t.Fatalf("stopped pipeline with a small lag: exit %d, healthy %v, problems %v\n%s", code, st.Healthy, st.Problems, stderr)
	}
	for _, key := range []string{"slot", "stream", "consumers", "vectors"} {
		if _, ok := raw[key]; !ok {
			t.Errorf("status --json lacks the top-level key %q", key)
		}
	}
	if s := st.Slot; s == nil || s.Name != "tidemark" || s.Active || s.ConfirmedLSN != confirmed || s.WALStatus != "reserved" {
		t.Errorf("slot = %+v, want tidemark inactive at %s, reserved", s, confirmed)
	}
	if st.Checkpoint == nil || st.Checkpoint.LSN != confirmed {
		t.Errorf("checkpoint = %+v, want %s", st.Checkpoint, confirmed)
	}
	if s := st.Stream; s == nil || s.Name != "PRODUCTS" || s.Messages != 5 || s.FirstSeq != 1 || s.LastSeq != 5 || s.Bytes == 0 {
		t.Errorf("stream = %+v, want PRODUCTS with 5 messages, sequences 1..5", s)
	}
	if st.Consumers == nil || len(st.Consumers) != 0 {
		t.Errorf("consumers = %#v, want an empty array", st.Consumers)
	}
	if v := st.Vectors; v == nil || v.Live != 3 || v.Deleted != 1 || len(v.Models) != 2 ||
		v.Models[0].Model != "hash-64" || v.Models[0].Live != 2 || v.Models[0].Deleted != 1 {
		t.Errorf("vectors = %+v, want 3 live, 1 deleted, hash-64 2/1 and openai 1/0", v)
	}

	// A consumer that has read two of five and holds one unacknowledged.
	cons, err := stream.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "encoders", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(2, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var got int
	for m := range batch.Messages() {
		if got == 0 {
			if err := m.DoubleAck(ctx); err != nil {
				t.Fatal(err)
			}
		}
		got++
	}
	if got != 2 {
		t.Fatalf("fetched %d messages, want 2", got)
	}
	st, _, code, _ = runStatus(t, dbURL, n.URL())
	if code != 0 || len(st.Consumers) != 1 {
		t.Fatalf("exit %d, consumers %+v", code, st.Consumers)
	}
	if c := st.Consumers[0]; c.Name != "encoders" || c.Pending != 3 || c.AckPending != 1 {
		t.Errorf("consumer = %+v, want encoders with 3 pending, 1 ack pending", c)
	}

	// Writes the slot has not confirmed, with nobody reading it: over --lag-max it is unhealthy.
	if _, err := pool.Exec(ctx, "CREATE TABLE wal_filler AS SELECT g FROM generate_series(1, 10000) g"); err != nil {
		t.Fatal(err)
	}
	st, _, code, stderr = runStatus(t, dbURL, n.URL(), "--lag-max", "1024")
	if code == 0 || st.Healthy || len(st.Problems) != 1 || !strings.Contains(st.Problems[0], "inactive") {
		t.Errorf("inactive slot over --lag-max: exit %d, healthy %v, problems %v", code, st.Healthy, st.Problems)
	}
	if !strings.Contains(stderr, "inactive") {
		t.Errorf("stderr does not give the reason: %q", stderr)
	}
	if st.Slot == nil || st.Slot.LagBytes <= 1024 {
		t.Errorf("slot = %+v, want lag over 1024 bytes", st.Slot)
	}
}

func TestStatusUnhealthy(t *testing.T) {
	dbURL := testenv.Database(t)
	n := testenv.NATS(t)
	// Nothing created yet: no slot, no stream.
	st, _, code, _ := runStatus(t, dbURL, n.URL())
	if code == 0 || st.Healthy {
		t.Fatalf("no slot, no stream: exit %d, healthy %v", code, st.Healthy)
	}
	joined := strings.Join(st.Problems, "\n")
	for _, want := range []string{"slot tidemark does not exist", "stream PRODUCTS does not exist"} {
		if !strings.Contains(joined, want) {
			t.Errorf("problems %q lack %q", joined, want)
		}
	}
	if st.Consumers == nil || st.Vectors != nil {
		t.Errorf("consumers %#v (want []), vectors %+v (want null without the table)", st.Consumers, st.Vectors)
	}
	// NATS down: non-zero with the reason, the Postgres part still reported.
	pool := testenv.Pool(t, dbURL)
	if _, err := pool.Exec(context.Background(), "SELECT pg_create_logical_replication_slot('tidemark', 'pgoutput')"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = pool.Exec(context.Background(), "SELECT pg_drop_replication_slot('tidemark')") })
	n.Shutdown()
	st, _, code, stderr := runStatus(t, dbURL, n.URL())
	if code == 0 || st.Healthy || !strings.Contains(strings.Join(st.Problems, "\n"), "nats") || !strings.Contains(stderr, "nats") {
		t.Errorf("NATS down: exit %d, healthy %v, problems %v, stderr %q", code, st.Healthy, st.Problems, stderr)
	}
	if st.Slot == nil || st.Slot.Name != "tidemark" {
		t.Errorf("slot = %+v with NATS down, want it reported", st.Slot)
	}
	// The text form lists the problem too.
	stdout, _, code := runTidemark(t, dbURL, n.URL(), "status")
	if code == 0 || !strings.Contains(stdout, "problem: nats") {
		t.Errorf("status (text) exit %d:\n%s", code, stdout)
	}
}
