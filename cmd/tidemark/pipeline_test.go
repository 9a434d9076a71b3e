package main

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/alecthomas/kong"
	"github.com/tidemark/tidemark/internal/testenv"
)

func TestDemoCommands(t *testing.T) {
	// Set in the environment, and still not what a command run from code gets.
	t.Setenv("TIDEMARK_EVENT_FORMAT", "debezium")
	t.Setenv("TIDEMARK_SLOT", "elsewhere")
	rc, ec := demoCommands()
	if rc.Format != "native" || rc.Slot != "tidemark" || rc.MaxInFlight != 4096 || rc.HTTPAddr != "" {
		t.Errorf("replicate defaults: %+v", rc)
	}
	if ec.Embedder != "hash" || ec.Dim != 384 || ec.Workers != 1 || ec.Consumer != "encoders" {
		t.Errorf("encode defaults: %+v", ec)
	}

	// Every other field the demo reads is what the command line runs with when given no flags.
	var wantRC ReplicateCmd
	flagDefaults(t, &wantRC)
	if wantRC.HTTPAddr != ":9464" {
		t.Errorf("replicate --http-addr default %q", wantRC.HTTPAddr)
	}
	wantRC.HTTPAddr, wantRC.Snapshot = "", "never"
	wantRC.SnapshotChunk, wantRC.OnSlotLost = 0, "" // read by the snapshot runner, which the demo has not
	if !reflect.DeepEqual(rc, wantRC) {
		t.Errorf("demo's replicate:\n%+v\nwant (the flags' defaults but for the demo's choices):\n%+v", rc, wantRC)
	}
	var wantEC EncodeCmd
	flagDefaults(t, &wantEC)
	wantEC.HTTPAddr, wantEC.Workers = "", 1
	wantEC.IndexInterval = 0   // the demo maintains no index
	f := &wantEC.EmbedderFlags // read by the openai embedder only
	f.EmbedModel, f.EmbedURL, f.EmbedBatch, f.EmbedTimeout, f.EmbedRetries = "", "", 0, 0, 0
	if !reflect.DeepEqual(ec, wantEC) {
		t.Errorf("demo's encode:\n%+v\nwant (the flags' defaults but for the demo's choices):\n%+v", ec, wantEC)
	}
}

// flagDefaults fills cmd with its flags' defaults, as if it had been given no flags and no
// environment.
func flagDefaults(t *testing.T, cmd any) {
	t.Helper()
	p, err := kong.New(cmd, kong.Exit(func(int) {}), nameVars)
	if err != nil {
		t.Fatal(err)
	}
	for _, group := range p.Model.AllFlags(true) {
		for _, f := range group {
			f.Tag.Envs = nil
		}
	}
	if _, err := p.Parse(nil); err != nil {
		t.Fatal(err)
	}
}

// TestReplicateRejectsBadFlagsBeforeTheSlot: a negative setting stops replicate with an error
// naming the flag before it creates anything: a slot created by a run that then fails holds
// WAL with nobody to consume it.
func TestReplicateRejectsBadFlagsBeforeTheSlot(t *testing.T) {
	t.Parallel()
	e := newReplEnv(t)
	ctx := testenv.Context(t, 2*time.Minute)
	for _, flag := range []string{
		"--max-in-flight=-1", "--ack-timeout=-1s", "--dedup-window=-1m", "--replicas=-1",
		"--status-interval=-1s", "--heartbeat=-1s",
	} {
		_, stderr, code := runTidemark(t, e.url, e.nats.URL(), "replicate", "--slot", "rev_bad_flags", "--http-addr", "", flag)
		if name, _, _ := strings.Cut(flag, "="); code == 0 || !strings.Contains(stderr, name) {
			t.Errorf("replicate %s: exit %d, stderr %q; want a failure naming the flag", flag, code, stderr)
		}
		var slots int
		if err := e.pool.QueryRow(ctx, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'rev_bad_flags'").Scan(&slots); err != nil {
			t.Fatal(err)
		}
		if slots != 0 {
			t.Fatalf("replicate %s failed and left its slot behind", flag)
		}
	}
}
