package main

// The demo's report: what it gathers once the pipeline stopped, and what it prints.

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/tidemark/tidemark/event"
	"github.com/tidemark/tidemark/sink"
)

// finish gathers what the report needs once the pipeline has stopped: the vectors, the stream
// and the final checkpoint.
func (d *demo) finish(ctx context.Context) error {
	err := d.pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE NOT deleted), count(*) FILTER (WHERE deleted)
		FROM product_embeddings WHERE model = $1`, d.emb.Model()).Scan(&d.live, &d.tombstones)
	if err != nil {
		return fmt.Errorf("count vectors: %w", err)
	}
	st, err := d.js.Stream(ctx, event.Stream)
	if err != nil {
		return fmt.Errorf("stream %s: %w", event.Stream, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return fmt.Errorf("stream %s: %w", event.Stream, err)
	}
	d.streamMsgs = info.State.Msgs
	cps, err := sink.OpenCheckpoints(ctx, d.js)
	if err != nil {
		return err
	}
	d.checkpoint, err = cps.Load(ctx, d.slot)
	return err
}

// report prints the outcome on w.
func (d *demo) report(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	products := 0
	for _, n := range d.sizes {
		products += n
	}
	fmt.Fprintf(tw, "Tidemark demo: %d products from %d suppliers, PostgreSQL %s, NATS JetStream (embedded)\n\n", products, len(d.sizes), d.pgVersion)
	fmt.Fprintln(tw, "Loaded (tidemark load):")
	for _, l := range d.loads {
		fmt.Fprintf(tw, "  supplier %d\t%s\t%s\t%d rows\t%.2fs\t%.0f rows/s\n", l.supplier.ID, l.supplier.Name, l.file, l.res.Inserted, l.res.Seconds, l.res.RowsPerSecond)
	}
	fmt.Fprintln(tw, "\nChanged:")
	for _, c := range d.changes {
		fmt.Fprintf(tw, "  %s\n", c)
	}
	ops := counterByLabel(d.replReg, "tidemark_replication_changes_total", "op")
	var events float64
	var parts []string
	for _, op := range []string{"insert", "update", "delete"} {
		events += ops[op]
		parts = append(parts, fmt.Sprintf("%.0f %s", ops[op], op))
	}
	fmt.Fprintf(tw, "\nReplicated: %.0f events published (%s); stream %s holds %d messages\n", events, strings.Join(parts, ", "), event.Stream, d.streamMsgs)
	var perEncoder []string
	var embedded float64
	for i, reg := range d.encRegs {
		res := counterByLabel(reg, "tidemark_encoder_events_total", "result")
		var n float64
		for _, v := range res {
			n += v
		}
		perEncoder = append(perEncoder, fmt.Sprintf("encode-%d %.0f", i+1, n))
		embedded += counterByLabel(reg, "tidemark_embed_texts_total", "")[""]
	}
	fmt.Fprintf(tw, "Encoded: events shared by two encoders (%s); %.0f texts embedded (a change that leaves the text as it was keeps its vector)\n", strings.Join(perEncoder, ", "), embedded)
	fmt.Fprintf(tw, "Vectors (model %s): %d live, %d deleted; every live product has a current vector\n", d.emb.Model(), d.live, d.tombstones)
	total := d.caughtUp.Sub(d.start).Seconds()
	fmt.Fprintf(tw, "Timing: all vectors current %.1fs after the last change; %.1fs from the first load (%.0f events/s end to end)\n",
		d.caughtUp.Sub(d.lastChange).Seconds(), total, events/total)
	fmt.Fprintf(tw, "\nSearch %q (tidemark search, top %d):\n", d.cmd.Query, len(d.hits))
	for _, h := range d.hits {
		fmt.Fprintf(tw, "  %.4f\tsupplier %d\t%s\t%s\n", h.Score, h.SupplierID, h.SKU, h.Name)
	}
	fmt.Fprintf(tw, "\nStopped cleanly: final checkpoint of slot %s at %s\n", d.slot, d.checkpoint)
	return tw.Flush()
}

// counterByLabel sums the counter name of reg by the value of label ("" sums everything
// under the key "").
func counterByLabel(reg prometheus.Gatherer, name, label string) map[string]float64 {
	out := map[string]float64{}
	mfs, err := reg.Gather()
	if err != nil {
		return out
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			key := ""
			for _, lp := range m.GetLabel() {
				if label != "" && lp.GetName() == label {
					key = lp.GetValue()
				}
			}
			out[key] += m.GetCounter().GetValue()
		}
	}
	return out
}

func plural(n int64, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
