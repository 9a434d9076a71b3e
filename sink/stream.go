package sink

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/tidemark/tidemark/event"
)

// Names shared with the other parts of tidemark.
const (
	// Stream is the stream of product changes.
	Stream = "PRODUCTS"
	// SubjectPrefix starts every subject of the stream: products.<supplier_id>.<op>.
	SubjectPrefix = "products"
	// TruncateSubject carries truncates, which have no supplier.
	TruncateSubject = "products.all.truncate"
	// CheckpointBucket is the KV bucket of saved checkpoints (key = slot, value = LSN text).
	CheckpointBucket = "tidemark_checkpoints"
)

// StreamConfig is the PRODUCTS stream's setup.
type StreamConfig struct {
	// Duplicates is the window in which a repeated Nats-Msg-Id is dropped; default 2m.
	Duplicates time.Duration
	// Replicas is the number of copies in a cluster; default 1.
	Replicas int
}

// EnsureStream creates the PRODUCTS stream, or updates it to cfg. It is idempotent.
func EnsureStream(ctx context.Context, js jetstream.JetStream, cfg StreamConfig) (jetstream.Stream, error) {
	if cfg.Duplicates <= 0 {
		cfg.Duplicates = 2 * time.Minute
	}
	if cfg.Replicas <= 0 {
		cfg.Replicas = 1
	}
	s, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        Stream,
		Description: "Row changes of the products table, one message per change (tidemark).",
		Subjects:    []string{SubjectPrefix + ".>"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Duplicates:  cfg.Duplicates,
		Replicas:    cfg.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("create or update stream %s: %w", Stream, err)
	}
	return s, nil
}

// Subject is the subject of change c: products.<supplier_id>.<op>, or products.all.truncate.
func Subject(c *event.Change) string {
	return string(AppendSubject(nil, c))
}

// AppendSubject appends c's subject to dst.
func AppendSubject(dst []byte, c *event.Change) []byte {
	if c.Op == event.OpTruncate {
		return append(dst, TruncateSubject...)
	}
	dst = append(dst, SubjectPrefix+"."...)
	dst = strconv.AppendInt(dst, c.Key.SupplierID, 10)
	dst = append(dst, '.')
	return append(dst, c.Op...)
}

// MsgID is c's Nats-Msg-Id, <commit_lsn>:<seq> (16/B374D848:42): the same every time the
// change is replayed from the WAL, so JetStream drops the repeat inside its duplicate window.
func MsgID(c *event.Change) string { return string(AppendMsgID(nil, c)) }

// AppendMsgID appends c's message id to dst.
func AppendMsgID(dst []byte, c *event.Change) []byte {
	dst = c.Source.CommitLSN.AppendTo(dst)
	dst = append(dst, ':')
	return strconv.AppendInt(dst, int64(c.Source.Seq), 10)
}
