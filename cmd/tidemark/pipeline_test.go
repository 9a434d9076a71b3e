package main

import "testing"

func TestWithDefaults(t *testing.T) {
	// Set in the environment, and still not what a command run from code gets.
	t.Setenv("TIDEMARK_EVENT_FORMAT", "debezium")
	t.Setenv("TIDEMARK_SLOT", "elsewhere")
	var rc ReplicateCmd
	if err := withDefaults(&rc); err != nil {
		t.Fatal(err)
	}
	if rc.Format != "native" || rc.Slot != "tidemark" || rc.MaxInFlight != 4096 || rc.HTTPAddr != ":9464" {
		t.Errorf("replicate defaults: %+v", rc)
	}
	var ec EncodeCmd
	if err := withDefaults(&ec); err != nil {
		t.Fatal(err)
	}
	if ec.Embedder != "hash" || ec.Dim != 384 || ec.Workers != 2 || ec.Consumer != "encoders" {
		t.Errorf("encode defaults: %+v", ec)
	}
}
