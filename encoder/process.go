package encoder

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/tidemark/tidemark/catalog"
	"github.com/tidemark/tidemark/event"
)

// received is a decoded message of a batch.
type received struct {
	msg jetstream.Msg
	ch  change
}

// newer reports whether a comes after b in commit order.
func (a *received) newer(b *received) bool {
	return a.ch.Position().Compare(b.ch.Position()) > 0
}

// stringCol reads a text column of a row image; JSON null reads as "".
func stringCol(raw json.RawMessage, name string) (string, bool, error) {
	if raw == nil {
		return "", false, nil
	}
	if len(raw) == 0 || string(raw) == "null" {
		return "", true, nil
	}
	s, ok := jsonString(raw)
	if !ok {
		return "", true, fmt.Errorf("%w: column %s is not a string", ErrPoison, name)
	}
	return s, true, nil
}

// pending is the newest event of one product in a batch, on its way to a write.
type pending struct {
	ev    *received
	text  string
	sku   *string
	name  *string
	hash  []byte
	vec   []float32
	gone  bool // its row no longer exists; a later delete event settles it
	dead  bool // dead-lettered
	fresh bool // no vector of the model was stored for its key
}

// batch is one fetch on its way to the vector table. Its phases are its methods, run in
// order by [Encoder.process]: decode (and coalesce per product), texts, changed, embed, write
// and ack.
type batch struct {
	e    *Encoder
	msgs []jetstream.Msg
	t0   time.Time

	latest    map[event.Key]*received // the newest event of each product
	truncates []*received
	epochs    []*received
	settled   []jetstream.Msg // acked after the commit
	coalesced int

	items     []*pending
	deletes   int
	liveKeys  []event.Key
	toEmbed   []*pending
	unchanged []*pending
	missed    []*pending // unchanged, but the stored vector was replaced meanwhile

	// Cumulative times since the batch arrived, to see where a slow batch spends its time.
	tDecode, tText, tHashes, tEmbed, tWrite, tCommit time.Duration
}

// process runs one batch: everything it acks is committed first. A nil error means every
// message was acked (or dead-lettered); otherwise none of the non-poison ones was.
func (e *Encoder) process(ctx context.Context, msgs []jetstream.Msg) error {
	b := &batch{e: e, msgs: msgs, t0: time.Now(), latest: make(map[event.Key]*received, len(msgs))}
	if err := b.decode(ctx); err != nil {
		return err
	}
	b.tDecode = time.Since(b.t0)
	if err := b.texts(ctx); err != nil {
		return err
	}
	b.tText = time.Since(b.t0)
	if err := b.changed(ctx); err != nil {
		return err
	}
	b.tHashes = time.Since(b.t0)
	if err := e.embed(ctx, msgs, b.toEmbed); err != nil {
		return err
	}
	b.tEmbed = time.Since(b.t0)
	if err := b.write(ctx); err != nil {
		return err
	}
	b.ack()
	return nil
}

// decode decodes the messages, dead-letters the poison ones and keeps the newest event of each
// product; the older ones are settled by the newer.
func (b *batch) decode(ctx context.Context) error {
	var dec event.Decoder
	for _, m := range b.msgs {
		ch, err := decode(&dec, m)
		if err != nil {
			if errors.Is(err, ErrPoison) {
				if derr := b.e.deadLetter(ctx, m, err); derr != nil {
					return derr
				}
				continue
			}
			return err
		}
		ev := &received{msg: m, ch: ch}
		if ch.Op == event.OpTruncate {
			b.truncates = append(b.truncates, ev)
			continue
		}
		if ch.Op == event.OpEpochOpen || ch.Op == event.OpEpochClose {
			b.epochs = append(b.epochs, ev)
			continue
		}
		evs := []*received{ev}
		if old, ok := ch.Before.Key(); ch.Op == event.OpUpdate && ok && old != ch.Key && validKey(old) {
			// An update that moved the product to another key: the old key is gone.
			evs = append(evs, &received{msg: m, ch: change{Change: event.Change{Op: event.OpDelete, Key: old, Source: ch.Source}}})
		}
		for _, ev := range evs {
			if prev, ok := b.latest[ev.ch.Key]; ok {
				b.coalesced++
				if !ev.newer(prev) {
					b.settled = append(b.settled, m)
					continue
				}
				b.settled = append(b.settled, prev.msg)
			}
			b.latest[ev.ch.Key] = ev
		}
	}
	return nil
}

// texts builds each live product's text; unchanged TOAST columns come from the table.
func (b *batch) texts(ctx context.Context) error {
	b.items = make([]*pending, 0, len(b.latest))
	var needRows []event.Key
	for _, ev := range b.latest {
		p := &pending{ev: ev}
		b.items = append(b.items, p)
		if ev.ch.Op == event.OpDelete {
			b.deletes++
			continue
		}
		if toastNeeded(ev.ch.UnchangedToast) {
			needRows = append(needRows, ev.ch.Key)
		}
	}
	var current map[event.Key]productText
	if len(needRows) > 0 {
		var err error
		if current, err = b.e.store.currentRows(ctx, needRows); err != nil {
			return err
		}
	}
	for _, p := range b.items {
		ch := &p.ev.ch
		if ch.Op == event.OpDelete {
			continue
		}
		var pt productText
		if toastNeeded(ch.UnchangedToast) {
			cur, ok := current[ch.Key]
			if !ok {
				p.gone = true
				continue
			}
			pt = cur
		}
		if err := fillText(&pt, ch); err != nil {
			if derr := b.e.deadLetter(ctx, p.ev.msg, err); derr != nil {
				return derr
			}
			p.dead = true
			continue
		}
		if sku, ok, err := stringCol(ch.text.sku, "sku"); err == nil && ok {
			p.sku = &sku
		}
		name := pt.name
		p.name = &name
		p.text = Text(pt.name, pt.description, pt.attributes)
		p.hash = ContentHash(b.e.model, p.text)
		b.liveKeys = append(b.liveKeys, ch.Key)
	}
	return nil
}

// changed sorts the live products into those to embed and those whose stored vector is of the
// same text: embed only what changed.
func (b *batch) changed(ctx context.Context) error {
	var stored map[event.Key]storedHash
	if len(b.liveKeys) > 0 {
		var err error
		if stored, err = b.e.store.hashes(ctx, b.e.model, b.liveKeys); err != nil {
			return err
		}
	}
	for _, p := range b.items {
		if p.ev.ch.Op == event.OpDelete || p.gone || p.dead {
			continue
		}
		s, ok := stored[p.ev.ch.Key]
		if ok && !s.deleted && string(s.hash) == string(p.hash) {
			b.unchanged = append(b.unchanged, p)
			continue
		}
		p.fresh = !ok
		b.toEmbed = append(b.toEmbed, p)
	}
	return nil
}

// write writes the vectors, the truncates and the epochs in one transaction and commits it.
func (b *batch) write(ctx context.Context) error {
	tx, err := b.e.store.begin(ctx)
	if err != nil {
		return err
	}
	defer tx.end(ctx)
	if err := b.upsert(ctx, tx); err != nil {
		return err
	}
	if err := b.truncate(ctx, tx); err != nil {
		return err
	}
	if err := b.e.applyEpochs(ctx, tx, b.epochs); err != nil {
		return err
	}
	b.tWrite = time.Since(b.t0)
	if err := tx.commit(ctx); err != nil {
		return err
	}
	b.tCommit = time.Since(b.t0)
	return nil
}

// upsert writes the vectors of the products, embedding after all those whose unchanged text's
// stored vector another batch replaced meanwhile.
func (b *batch) upsert(ctx context.Context, tx pgx.Tx) error {
	ws := make([]write, 0, len(b.items))
	for _, p := range b.items {
		if p.gone || p.dead {
			continue
		}
		ws = append(ws, p.write())
	}
	applied, err := b.e.store.upsert(ctx, tx, b.e.model, ws, false)
	if err != nil {
		return err
	}
	for _, p := range b.unchanged {
		if !applied[p.ev.ch.Key] {
			b.missed = append(b.missed, p)
		}
	}
	if len(b.missed) == 0 {
		return nil
	}
	if err := b.e.embed(ctx, b.msgs, b.missed); err != nil {
		return err
	}
	ws = ws[:0]
	for _, p := range b.missed {
		ws = append(ws, p.write())
	}
	_, err = b.e.store.upsert(ctx, tx, b.e.model, ws, true)
	return err
}

// truncate tombstones the vectors of truncated tables in commit order; a truncate of a table
// that is not the products' is dead-lettered (and left nil in b.truncates).
func (b *batch) truncate(ctx context.Context, tx pgx.Tx) error {
	slices.SortFunc(b.truncates, func(x, y *received) int {
		if x.newer(y) {
			return 1
		}
		return -1
	})
	for i, ev := range b.truncates {
		supplier, err := truncateScope(ev.ch.Table)
		if err != nil {
			if derr := b.e.deadLetter(ctx, ev.msg, err); derr != nil {
				return derr
			}
			b.truncates[i] = nil
			continue
		}
		n, err := b.e.store.truncate(ctx, tx, b.e.model, supplier, ev.ch.Source.CommitLSN, ev.ch.Source.Seq)
		if err != nil {
			return err
		}
		b.e.log.Info("truncate: tombstoned vectors", "table", ev.ch.Table, "vectors", n, "lsn", ev.ch.Source.CommitLSN)
	}
	return nil
}

// ack counts the batch's events and acks every message the committed transaction settled:
// counted first, so that whoever sees an event acked sees it counted too.
func (b *batch) ack() {
	gone, nTrunc := 0, 0
	for _, p := range b.items {
		if !p.dead && p.gone {
			gone++
		}
	}
	for _, ev := range b.truncates {
		if ev != nil {
			nTrunc++
		}
	}
	events := b.e.m.events
	events.WithLabelValues("coalesced").Add(float64(b.coalesced))
	events.WithLabelValues("deleted").Add(float64(b.deletes))
	events.WithLabelValues("gone").Add(float64(gone))
	events.WithLabelValues("truncated").Add(float64(nTrunc))
	events.WithLabelValues("epoch").Add(float64(len(b.epochs)))
	events.WithLabelValues("embedded").Add(float64(len(b.toEmbed) + len(b.missed)))
	events.WithLabelValues("skipped_unchanged").Add(float64(len(b.unchanged) - len(b.missed)))

	for _, m := range b.settled {
		_ = m.Ack()
	}
	for _, p := range b.items {
		if !p.dead {
			_ = p.ev.msg.Ack()
		}
	}
	for _, ev := range b.truncates {
		if ev != nil {
			_ = ev.msg.Ack()
		}
	}
	for _, ev := range b.epochs {
		_ = ev.msg.Ack()
	}
	b.e.log.Debug("batch done", "messages", len(b.msgs), "decoded", b.tDecode, "texts", b.tText, "hashes", b.tHashes,
		"embedded", b.tEmbed, "written", b.tWrite, "committed", b.tCommit, "acked", time.Since(b.t0))
}

func (p *pending) write() write {
	ch := &p.ev.ch
	return write{
		key: ch.Key, sku: p.sku, name: p.name, vec: p.vec, hash: p.hash,
		lsn: ch.Source.CommitLSN, seq: ch.Source.Seq, deleted: ch.Op == event.OpDelete, fresh: p.fresh,
	}
}

// toastNeeded reports whether a text column came as unchanged TOAST.
func toastNeeded(cols []string) bool {
	for _, c := range cols {
		if c == "name" || c == "description" || c == "attributes" {
			return true
		}
	}
	return false
}

// fillText takes the text columns present in the event's image over those in pt (read from
// the table for unchanged TOAST columns).
func fillText(pt *productText, ch *change) error {
	if s, ok, err := stringCol(ch.text.name, "name"); err != nil {
		return err
	} else if ok {
		pt.name = s
	}
	if s, ok, err := stringCol(ch.text.description, "description"); err != nil {
		return err
	} else if ok {
		pt.description = s
	}
	if ch.text.attributes != nil {
		pt.attributes = ch.text.attributes
	}
	return nil
}

// truncateScope maps a truncated table to the supplier whose products it held (0: all).
func truncateScope(table string) (int32, error) {
	if table == "products" || table == "" {
		return 0, nil
	}
	if id, ok := catalog.PartitionSupplier(table); ok {
		return id, nil
	}
	return 0, fmt.Errorf("%w: truncate of unknown table %q", ErrPoison, table)
}

// embed computes the vectors of ps. While it runs, the batch's messages are marked in
// progress now and then, so a slow or throttled embedder does not get them redelivered.
func (e *Encoder) embed(ctx context.Context, msgs []jetstream.Msg, ps []*pending) error {
	if len(ps) == 0 {
		return nil
	}
	texts := make([]string, len(ps))
	for i, p := range ps {
		texts[i] = p.text
	}
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(max(e.cfg.AckWait/3, 100*time.Millisecond))
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				for _, m := range msgs {
					_ = m.InProgress()
				}
			}
		}
	}()
	start := time.Now()
	vecs, err := e.emb.Embed(ctx, texts)
	close(done)
	<-stopped
	e.m.embedSeconds.Observe(time.Since(start).Seconds())
	if err != nil {
		return fmt.Errorf("embed %d texts: %w", len(texts), err)
	}
	if len(vecs) != len(ps) {
		return fmt.Errorf("embedder returned %d vectors for %d texts", len(vecs), len(ps))
	}
	e.m.texts.Add(float64(len(texts)))
	for i, p := range ps {
		p.vec = vecs[i]
	}
	return nil
}

// rejected reports whether err is the database or the embedder refusing an input, rather
// than a connection or availability problem: worth retrying the batch's messages one by one.
func rejected(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.SQLState()[:2] {
		case "08", "40", "53", "57", "58": // connection, rollback, resources, shutdown, system
			return false
		}
		return true
	}
	var r *retryable
	if errors.As(err, &r) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || pgconn.Timeout(err) {
		return false
	}
	return errors.Is(err, errEmbedRejected) || errors.Is(err, ErrPoison)
}
