package sink

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/tidemark/tidemark/event"
)

// Names shared with the other parts of tidemark; the stream and its subjects are
// [event.Stream] and [event.SubjectPrefix].
const (
	// TruncateSubject carries truncates, which have no supplier.
	TruncateSubject = event.SubjectPrefix + ".all.truncate"
	// CheckpointBucket is the KV bucket of saved checkpoints (key = slot, value = LSN text).
	CheckpointBucket = "tidemark_checkpoints"
)

// StreamConfig is the change stream's setup; [DefaultStreamConfig] is its default.
type StreamConfig struct {
	// Name is the stream; default PRODUCTS.
	Name string
	// Duplicates is the window in which a repeated Nats-Msg-Id is dropped; default 2m.
	Duplicates time.Duration
	// Replicas is the number of copies in a cluster; default 1.
	Replicas int
}

// EnsureStream creates the change stream, or sets the settings tidemark owns on an existing
// one (subjects, duplicate window, replicas), keeping the limits an operator gave it (age,
// size, message count). It is idempotent.
func EnsureStream(ctx context.Context, js jetstream.JetStream, cfg StreamConfig) (jetstream.Stream, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	want := jetstream.StreamConfig{
		Name:        cfg.Name,
		Description: "Row changes of the products table, one message per change (tidemark).",
		Subjects:    []string{event.SubjectPrefix + ".>"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Duplicates:  cfg.Duplicates,
		Replicas:    cfg.Replicas,
	}
	s, err := js.Stream(ctx, cfg.Name)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		s, err = js.CreateOrUpdateStream(ctx, want)
		if err != nil {
			return nil, fmt.Errorf("create stream %s: %w", cfg.Name, err)
		}
		return s, nil
	case err != nil:
		return nil, fmt.Errorf("look up stream %s: %w", cfg.Name, err)
	}
	have := s.CachedInfo().Config
	if have.Description == want.Description && slices.Equal(have.Subjects, want.Subjects) &&
		have.Duplicates == want.Duplicates && have.Replicas == want.Replicas {
		return s, nil
	}
	have.Description, have.Subjects, have.Duplicates, have.Replicas = want.Description, want.Subjects, want.Duplicates, want.Replicas
	if s, err = js.UpdateStream(ctx, have); err != nil {
		return nil, fmt.Errorf("update stream %s: %w", cfg.Name, err)
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
	dst = append(dst, event.SubjectPrefix+"."...)
	dst = strconv.AppendInt(dst, c.Key.SupplierID, 10)
	dst = append(dst, '.')
	return append(dst, c.Op...)
}

// MsgID is c's Nats-Msg-Id, its position <commit_lsn>:<seq> (16/B374D848:42): the same every
// time the change is replayed from the WAL.
func MsgID(c *event.Change) string { return string(AppendMsgID(nil, c)) }

// AppendMsgID appends c's message id to dst.
func AppendMsgID(dst []byte, c *event.Change) []byte { return c.Position().Append(dst) }

// ParseMsgID reads the position back from a message id written by MsgID; ok is false for any
// other id.
func ParseMsgID(id string) (pos event.Position, ok bool) {
	pos, err := event.ParsePosition(id)
	if err != nil || pos.String() != id {
		return event.Position{}, false
	}
	return pos, true
}
