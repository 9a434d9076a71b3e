package encoder

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

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

// process runs one batch: everything it acks is committed first. A nil error means every
// message was acked (or dead-lettered); otherwise none of the non-poison ones was.
func (e *Encoder) process(ctx context.Context, msgs []jetstream.Msg) error {
	t0 := time.Now()
	var (
		latest    = make(map[event.Key]*received, len(msgs))
		truncates []*received
		epochs    []*received
		settled   []jetstream.Msg // acked after the commit
		coalesced int
		dec       event.Decoder
	)
	for _, m := range msgs {
		ch, err := decode(&dec, m)
		if err != nil {
			if errors.Is(err, ErrPoison) {
				if derr := e.deadLetter(ctx, m, err); derr != nil {
					return derr
				}
				continue
			}
			return err
		}
		ev := &received{msg: m, ch: ch}
		if ch.Op == event.OpTruncate {
			truncates = append(truncates, ev)
			continue
		}
		if ch.Op == event.OpEpochOpen || ch.Op == event.OpEpochClose {
			epochs = append(epochs, ev)
			continue
		}
		evs := []*received{ev}
		if old, ok := ch.Before.Key(); ch.Op == event.OpUpdate && ok && old != ch.Key && validKey(old) {
			// An update that moved the product to another key: the old key is gone.
			evs = append(evs, &received{msg: m, ch: change{Change: event.Change{Op: event.OpDelete, Key: old, Source: ch.Source}}})
		}
		for _, ev := range evs {
			if prev, ok := latest[ev.ch.Key]; ok {
				coalesced++
				if !ev.newer(prev) {
					settled = append(settled, m)
					continue
				}
				settled = append(settled, prev.msg)
			}
			latest[ev.ch.Key] = ev
		}
	}

	tDecode := time.Since(t0)
	// Build each live product's text; unchanged TOAST columns come from the table.
	var (
		items    = make([]*pending, 0, len(latest))
		needRows []event.Key
		deletes  int
	)
	for _, ev := range latest {
		p := &pending{ev: ev}
		items = append(items, p)
		if ev.ch.Op == event.OpDelete {
			deletes++
			continue
		}
		if toastNeeded(ev.ch.UnchangedToast) {
			needRows = append(needRows, ev.ch.Key)
		}
	}
	var current map[event.Key]productText
	if len(needRows) > 0 {
		var err error
		if current, err = e.store.currentRows(ctx, needRows); err != nil {
			return err
		}
	}
	var liveKeys []event.Key
	for _, p := range items {
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
			if derr := e.deadLetter(ctx, p.ev.msg, err); derr != nil {
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
		p.hash = ContentHash(e.model, p.text)
		liveKeys = append(liveKeys, ch.Key)
	}

	tText := time.Since(t0)
	// Embed only what changed.
	var stored map[event.Key]storedHash
	if len(liveKeys) > 0 {
		var err error
		if stored, err = e.store.hashes(ctx, e.model, liveKeys); err != nil {
			return err
		}
	}
	var toEmbed, unchanged []*pending
	for _, p := range items {
		if p.ev.ch.Op == event.OpDelete || p.gone || p.dead {
			continue
		}
		s, ok := stored[p.ev.ch.Key]
		if ok && !s.deleted && string(s.hash) == string(p.hash) {
			unchanged = append(unchanged, p)
			continue
		}
		p.fresh = !ok
		toEmbed = append(toEmbed, p)
	}
	tHashes := time.Since(t0)
	if err := e.embed(ctx, msgs, toEmbed); err != nil {
		return err
	}
	tEmbed := time.Since(t0)

	tx, err := e.store.begin(ctx)
	if err != nil {
		return err
	}
	defer tx.end(ctx)
	ws := make([]write, 0, len(items))
	for _, p := range items {
		if p.gone || p.dead {
			continue
		}
		ws = append(ws, p.write())
	}
	applied, err := e.store.upsert(ctx, tx, e.model, ws, false)
	if err != nil {
		return err
	}
	// An unchanged text whose stored vector another batch replaced meanwhile: embed after all.
	var missed []*pending
	for _, p := range unchanged {
		if !applied[p.ev.ch.Key] {
			missed = append(missed, p)
		}
	}
	if len(missed) > 0 {
		if err := e.embed(ctx, msgs, missed); err != nil {
			return err
		}
		ws = ws[:0]
		for _, p := range missed {
			ws = append(ws, p.write())
		}
		if _, err := e.store.upsert(ctx, tx, e.model, ws, true); err != nil {
			return err
		}
	}
	slices.SortFunc(truncates, func(a, b *received) int {
		if a.newer(b) {
			return 1
		}
		return -1
	})
	for i, ev := range truncates {
		supplier, err := truncateScope(ev.ch.Table)
		if err != nil {
			if derr := e.deadLetter(ctx, ev.msg, err); derr != nil {
				return derr
			}
			truncates[i] = nil
			continue
		}
		n, err := e.store.truncate(ctx, tx, e.model, supplier, ev.ch.Source.CommitLSN, ev.ch.Source.Seq)
		if err != nil {
			return err
		}
		e.log.Info("truncate: tombstoned vectors", "table", ev.ch.Table, "vectors", n, "lsn", ev.ch.Source.CommitLSN)
	}
	if err := e.applyEpochs(ctx, tx, epochs); err != nil {
		return err
	}
	tWrite := time.Since(t0)
	if err := tx.commit(ctx); err != nil {
		return err
	}
	tCommit := time.Since(t0)

	for _, m := range settled {
		_ = m.Ack()
	}
	gone := 0
	nTrunc := 0
	for _, p := range items {
		if p.dead {
			continue
		}
		if p.gone {
			gone++
		}
		_ = p.ev.msg.Ack()
	}
	for _, ev := range truncates {
		if ev != nil {
			nTrunc++
			_ = ev.msg.Ack()
		}
	}
	for _, ev := range epochs {
		_ = ev.msg.Ack()
	}
	e.m.events.WithLabelValues("coalesced").Add(float64(coalesced))
	e.m.events.WithLabelValues("deleted").Add(float64(deletes))
	e.m.events.WithLabelValues("gone").Add(float64(gone))
	e.m.events.WithLabelValues("truncated").Add(float64(nTrunc))
	e.m.events.WithLabelValues("epoch").Add(float64(len(epochs)))
	e.m.events.WithLabelValues("embedded").Add(float64(len(toEmbed) + len(missed)))
	e.m.events.WithLabelValues("skipped_unchanged").Add(float64(len(unchanged) - len(missed)))
	// Cumulative times since the batch arrived, to see where a slow batch spends its time.
	e.log.Debug("batch done", "messages", len(msgs), "decoded", tDecode, "texts", tText, "hashes", tHashes,
		"embedded", tEmbed, "written", tWrite, "committed", tCommit, "acked", time.Since(t0))
	return nil
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
