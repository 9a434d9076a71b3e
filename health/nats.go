package health

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pglogrepl"
	"github.com/nats-io/nats.go/jetstream"
)

// SavedCheckpoint reads the checkpoint saved for opts.Slot in opts.Bucket (see
// Options.Checkpoint): 0 when the bucket or the key does not exist.
func SavedCheckpoint(ctx context.Context, js jetstream.JetStream, opts Options) (pglogrepl.LSN, error) {
	opts = opts.withDefaults()
	kv, err := js.KeyValue(ctx, opts.Bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("checkpoint bucket %s: %w", opts.Bucket, err)
	}
	e, err := kv.Get(ctx, opts.Slot)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("checkpoint %s/%s: %w", opts.Bucket, opts.Slot, err)
	}
	lsn, err := pglogrepl.ParseLSN(strings.TrimSpace(string(e.Value())))
	if err != nil {
		return 0, fmt.Errorf("checkpoint %s/%s holds %q: %w", opts.Bucket, opts.Slot, e.Value(), err)
	}
	return lsn, nil
}

// CheckpointCheck reports the checkpoint SavedCheckpoint read (or failed to read).
func CheckpointCheck(opts Options, lsn pglogrepl.LSN, err error) Check {
	opts = opts.withDefaults()
	switch {
	case err != nil:
		return warn("checkpoint", "check nats-server is healthy; without the checkpoint a dropped slot looks not yet created", "%v", err)
	case lsn == 0:
		return ok("checkpoint", "%s none saved yet (tidemark replicate saves it)", opts.Slot)
	}
	return ok("checkpoint", "%s saved at %s in %s", opts.Slot, lsn, opts.Bucket)
}

// NATSChecks checks that JetStream is enabled and that the stream, when it exists, keeps what
// the pipeline relies on: a duplicate window (exactly-once publishing across replays) and file
// storage (events survive a NATS restart).
func NATSChecks(ctx context.Context, js jetstream.JetStream, opts Options) []Check {
	opts = opts.withDefaults()
	info, err := js.AccountInfo(ctx)
	if errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount) {
		return []Check{fail("jetstream", "start nats-server with -js (or jetstream {} in its config) and enable JetStream for the account",
			"JetStream is not enabled: %v", err)}
	}
	if err != nil {
		return []Check{fail("jetstream", "check nats-server is healthy and the credentials may use JetStream", "account info: %v", err)}
	}
	out := []Check{ok("jetstream", "enabled, %d streams, %s stored", info.Streams, FormatBytes(int64(info.Store)))}
	stream, err := js.Stream(ctx, opts.Stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return append(out, ok("stream", "%s not yet created (tidemark replicate creates it)", opts.Stream))
	}
	if err != nil {
		return append(out, fail("stream", "check nats-server is healthy", "stream %s: %v", opts.Stream, err))
	}
	cfg := stream.CachedInfo().Config
	var problems []string
	if cfg.Duplicates <= 0 {
		problems = append(problems, "no duplicate window (replays after a crash would store events twice)")
	}
	if cfg.Storage != jetstream.FileStorage {
		problems = append(problems, "memory storage (events are lost when NATS restarts)")
	}
	if len(problems) > 0 {
		return append(out, warn("stream", fmt.Sprintf("nats stream edit %s (duplicate window e.g. 2m), or delete it and let tidemark replicate re-create it; memory storage needs a re-create", opts.Stream),
			"%s: %s", opts.Stream, strings.Join(problems, "; ")))
	}
	return append(out, ok("stream", "%s: %s storage, %d replicas, duplicate window %s, subjects %s",
		opts.Stream, cfg.Storage, cfg.Replicas, cfg.Duplicates, strings.Join(cfg.Subjects, " ")))
}
