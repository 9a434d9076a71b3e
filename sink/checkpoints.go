package sink

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/jackc/pglogrepl"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/tidemark/tidemark/replication"
)

// Checkpoints keeps slots' confirmed LSNs in the KV bucket tidemark_checkpoints. It
// implements replication.Checkpoints.
type Checkpoints struct {
	kv jetstream.KeyValue

	// lostRev is, per slot, the revision of the lost epochs this handle last read or wrote
	// (0: the key did not exist); a slot missing has not been read.
	mu      sync.Mutex
	lostRev map[string]uint64
}

var (
	_ replication.Checkpoints = (*Checkpoints)(nil)
	_ replication.Origins     = (*Checkpoints)(nil)
	_ replication.LostEpochs  = (*Checkpoints)(nil)
)

// EnsureCheckpoints creates (or opens) the checkpoint bucket.
func EnsureCheckpoints(ctx context.Context, js jetstream.JetStream, replicas int) (*Checkpoints, error) {
	switch {
	case replicas == 0:
		replicas = DefaultStreamConfig().Replicas
	case replicas < 0:
		return nil, fmt.Errorf("sink: --replicas %d must be positive", replicas)
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      CheckpointBucket,
		Description: "tidemark replication checkpoints: key = slot, value = confirmed LSN; key = slot.origin, value = the server it was taken on; key = slot.lost_epochs, value = the snapshot epochs that lost a chunk (JSON)",
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
		History:     1,
	})
	if err != nil {
		return nil, fmt.Errorf("checkpoint bucket %s: %w", CheckpointBucket, err)
	}
	return &Checkpoints{kv: kv}, nil
}

// OpenCheckpoints opens the checkpoint bucket; jetstream.ErrBucketNotFound when missing.
func OpenCheckpoints(ctx context.Context, js jetstream.JetStream) (*Checkpoints, error) {
	kv, err := js.KeyValue(ctx, CheckpointBucket)
	if err != nil {
		return nil, fmt.Errorf("checkpoint bucket %s: %w", CheckpointBucket, err)
	}
	return &Checkpoints{kv: kv}, nil
}

// Load returns slot's saved LSN, 0 when none is saved.
func (c *Checkpoints) Load(ctx context.Context, slot string) (pglogrepl.LSN, error) {
	e, err := c.kv.Get(ctx, slot)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read checkpoint of %s (bucket %s): %w", slot, CheckpointBucket, err)
	}
	lsn, err := pglogrepl.ParseLSN(string(e.Value()))
	if err != nil {
		return 0, fmt.Errorf("checkpoint of %s holds %q: %w", slot, e.Value(), err)
	}
	return lsn, nil
}

// Save stores lsn as slot's checkpoint.
func (c *Checkpoints) Save(ctx context.Context, slot string, lsn pglogrepl.LSN) error {
	if _, err := c.kv.Put(ctx, slot, []byte(lsn.String())); err != nil {
		return fmt.Errorf("save checkpoint of %s (bucket %s): %w", slot, CheckpointBucket, err)
	}
	return nil
}

// OriginKey is the key a slot's origin is kept under in the checkpoint bucket: slot names have
// no dots, so it is no slot's key.
func OriginKey(slot string) string { return slot + ".origin" }

// LoadOrigin returns the origin (replication.Origin) of the server slot's checkpoint was taken
// on, "" when none is saved.
func (c *Checkpoints) LoadOrigin(ctx context.Context, slot string) (string, error) {
	e, err := c.kv.Get(ctx, OriginKey(slot))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read checkpoint origin of %s (bucket %s): %w", slot, CheckpointBucket, err)
	}
	return string(e.Value()), nil
}

// SaveOrigin stores the origin of the server slot streams from.
func (c *Checkpoints) SaveOrigin(ctx context.Context, slot, origin string) error {
	if _, err := c.kv.Put(ctx, OriginKey(slot), []byte(origin)); err != nil {
		return fmt.Errorf("save checkpoint origin of %s (bucket %s): %w", slot, CheckpointBucket, err)
	}
	return nil
}

// lostEpochsKey is where a slot's lost snapshot epochs are kept.
func lostEpochsKey(slot string) string { return slot + ".lost_epochs" }

// LoadLostEpochs returns the snapshot epochs saved as having lost a chunk on slot, none when
// nothing is saved.
func (c *Checkpoints) LoadLostEpochs(ctx context.Context, slot string) ([]replication.LostEpoch, error) {
	e, err := c.kv.Get(ctx, lostEpochsKey(slot))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		c.setLostRev(slot, 0)
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read lost snapshot epochs of %s (bucket %s): %w", slot, CheckpointBucket, err)
	}
	var epochs []replication.LostEpoch
	if err := json.Unmarshal(e.Value(), &epochs); err != nil {
		return nil, fmt.Errorf("lost snapshot epochs of %s: %w: key %s of bucket %s: %w (fix the value, or delete the key, which forgets them: snapshot the suppliers of epochs replicate logged as lost again with --new-epoch)",
			slot, replication.ErrCheckpointCorrupt, lostEpochsKey(slot), CheckpointBucket, err)
	}
	c.setLostRev(slot, e.Revision())
	return epochs, nil
}

// SaveLostEpochs replaces the snapshot epochs saved as having lost a chunk on slot, provided
// nobody wrote them since this handle last read or wrote them: a replicator that lost the slot
// and still decodes what it had received must not replace what the slot's new holder saved
// (its losses would be forgotten). Such a save fails with [jetstream.ErrKeyExists] or
// [jetstream.ErrKeyRevisionMismatch]; a load reads the current revision. Without an earlier
// load it replaces whatever is saved.
func (c *Checkpoints) SaveLostEpochs(ctx context.Context, slot string, epochs []replication.LostEpoch) error {
	if epochs == nil {
		epochs = []replication.LostEpoch{}
	}
	b, err := json.Marshal(epochs)
	if err != nil {
		return fmt.Errorf("encode lost snapshot epochs of %s: %w", slot, err)
	}
	c.mu.Lock()
	rev, read := c.lostRev[slot]
	c.mu.Unlock()
	key := lostEpochsKey(slot)
	switch {
	case !read:
		rev, err = c.kv.Put(ctx, key, b)
	case rev == 0:
		// Create, not Update(0): it also writes over a key deleted by hand.
		rev, err = c.kv.Create(ctx, key, b)
	default:
		rev, err = c.kv.Update(ctx, key, b, rev)
	}
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return fmt.Errorf("save lost snapshot epochs of %s: another replicator saved them since they were read: %w", slot, err)
	}
	if err != nil {
		// The revision stays: had this save landed after all (a timeout), the next one fails
		// until they are read again.
		return fmt.Errorf("save lost snapshot epochs of %s (bucket %s): %w", slot, CheckpointBucket, err)
	}
	c.setLostRev(slot, rev)
	return nil
}

func (c *Checkpoints) setLostRev(slot string, rev uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.lostRev == nil {
		c.lostRev = map[string]uint64{}
	}
	c.lostRev[slot] = rev
}
