package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tidemark/tidemark/health"
)

// printSupplierTable writes one line per supplier and model. A "~" marks an estimate.
func printSupplierTable(w io.Writer, sups []health.SupplierStatus, consumer string, queueErr error, now time.Time) error {
	if sups == nil {
		_, err := fmt.Fprintln(w, "suppliers   not migrated yet (tidemark migrate)")
		return err
	}
	if len(sups) == 0 {
		_, err := fmt.Fprintln(w, "suppliers   none")
		return err
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "supplier\tname\tproducts\tmodel\tlive\tmissing\tstale\tdeleted\tlast load\tlast snapshot\toldest unembedded")
	for _, s := range sups {
		vecs := s.Vectors
		if len(vecs) == 0 {
			vecs = []health.SupplierVectors{{Model: "-", Missing: s.Products}}
		}
		for _, v := range vecs {
			fmt.Fprintf(tw, "%d\t%s\t~%d\t%s\t%d\t~%d\t%s\t%d\t%s\t%s\t%s\n", s.ID, orDash(s.Name), s.Products, v.Model,
				v.Live, v.Missing, staleText(s.Stale), v.Deleted, loadShort(s.LastLoad, now), snapshotShort(s.LastSnapshot, now),
				oldestShort(s, now))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if queueErr != nil {
		_, err := fmt.Fprintf(w, "stale and oldest unembedded unknown: %v\n", queueErr)
		return err
	}
	_, err := fmt.Fprintf(w, "(stale and oldest unembedded: what consumer %s has not applied; ~ estimated from table statistics)\n", consumer)
	return err
}

// printSupplierStatus is `status --supplier ID`: the pipeline's lines, then the supplier's.
func printSupplierStatus(w io.Writer, st *health.Status, consumer string, queueErr error, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	printPipeline(tw, st, now)
	fmt.Fprintln(tw)
	for _, s := range st.Suppliers {
		part := "no partition"
		if s.Partition != "" {
			part = "partition " + s.Partition
		}
		fmt.Fprintf(tw, "supplier\t%d %s, %s\n", s.ID, orDash(s.Name), part)
		fmt.Fprintf(tw, "products\t~%d (estimate from the partition's statistics)\n", s.Products)
		if len(s.Vectors) == 0 {
			fmt.Fprintf(tw, "vectors\tnone yet\n")
		}
		for _, v := range s.Vectors {
			fmt.Fprintf(tw, "vectors\t%s: %d live, ~%d missing, %d deleted\n", v.Model, v.Live, v.Missing, v.Deleted)
		}
		switch {
		case queueErr != nil:
			fmt.Fprintf(tw, "stale\tunknown: %v\n", queueErr)
		case s.Stale != nil:
			fmt.Fprintf(tw, "stale\t%d (updates and deletes consumer %s has not applied)\n", *s.Stale, consumer)
		}
		if t := s.OldestUnembedded; t != nil {
			older := ""
			if s.Stale == nil {
				older = " or older: the stream could not be read"
			}
			fmt.Fprintf(tw, "oldest unembedded\t%s (%s ago)%s\n", stamp(*t), ago(now, *t), older)
		} else if queueErr == nil {
			fmt.Fprintf(tw, "oldest unembedded\tnone: every change of the supplier is in the vectors\n")
		}
		fmt.Fprintf(tw, "last load\t%s\n", loadLong(s.LastLoad, now))
		fmt.Fprintf(tw, "last snapshot\t%s\n", snapshotLong(s.LastSnapshot, now))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return printHealth(w, st)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func staleText(n *int64) string {
	if n == nil {
		return "?"
	}
	return fmt.Sprint(*n)
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// ago is a short age: 45s, 12m, 3h, 2d.
func ago(now, t time.Time) string {
	d := max(now.Sub(t), 0)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

func loadShort(l *health.LoadRecord, now time.Time) string {
	if l == nil {
		return "-"
	}
	s := fmt.Sprintf("%s ago +%d ~%d -%d", ago(now, l.Finished), l.Inserted, l.Updated, l.Deleted)
	if l.Full {
		s += " full"
	}
	if l.InStream != nil && !*l.InStream {
		s += ", not yet replicated"
	}
	return s
}

func loadLong(l *health.LoadRecord, now time.Time) string {
	if l == nil {
		return "none recorded"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s (%s ago), %.1fs", stamp(l.Finished), ago(now, l.Finished), l.Finished.Sub(l.Started).Seconds())
	if l.Full {
		b.WriteString(", full drop")
	}
	fmt.Fprintf(&b, ": %d inserted, %d updated, %d deleted, %d unchanged, %d rejected, %d duplicates; %d products after it",
		l.Inserted, l.Updated, l.Deleted, l.Unchanged, l.Rejected, l.Duplicates, l.Products)
	if l.InStream != nil && !*l.InStream {
		fmt.Fprintf(&b, "; not yet replicated (the slot has not confirmed %s)", l.WALLSN)
	}
	return b.String()
}

func snapshotShort(sn *health.SnapshotInfo, now time.Time) string {
	if sn == nil {
		return "-"
	}
	if sn.Finished == nil {
		return fmt.Sprintf("running %d rows", sn.Rows)
	}
	return fmt.Sprintf("%s ago %d rows", ago(now, *sn.Finished), sn.Rows)
}

func snapshotLong(sn *health.SnapshotInfo, now time.Time) string {
	if sn == nil {
		return "none"
	}
	if sn.Finished == nil {
		return fmt.Sprintf("started %s (%s ago), not finished: %d rows in %s so far", stamp(sn.Started), ago(now, sn.Started), sn.Rows, chunks(sn.Chunks))
	}
	return fmt.Sprintf("%s (%s ago), finished in %.1fs: %d rows in %s", stamp(*sn.Finished), ago(now, *sn.Finished),
		sn.Finished.Sub(sn.Started).Seconds(), sn.Rows, chunks(sn.Chunks))
}

func chunks(n int) string {
	if n == 1 {
		return "1 chunk"
	}
	return fmt.Sprintf("%d chunks", n)
}

func oldestShort(s health.SupplierStatus, now time.Time) string {
	switch {
	case s.Stale == nil && s.OldestUnembedded != nil:
		return "≥" + ago(now, *s.OldestUnembedded) + " ago" // the stream would tell of older ones
	case s.OldestUnembedded != nil:
		return ago(now, *s.OldestUnembedded) + " ago"
	case s.Stale == nil:
		return "?"
	}
	return "-"
}
