package replication

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/tidemark/tidemark/event"
	"github.com/tidemark/tidemark/internal/fakedrop"
)

// Generated products (internal/fakedrop, as the bench writes them) as pgoutput insert
// messages, their values as PostgreSQL prints them: what the replicator decodes in the bench's
// replicate stage, about 480 bytes of values a row.

// jsonbText writes a's JSON as jsonb's output does: keys shortest first (then bytewise), ", "
// and ": " between elements.
func jsonbText(a fakedrop.Attributes) string {
	type kv struct{ k, v string }
	q := func(s string) string { return string(event.AppendString(nil, s)) }
	tags := "["
	for i, t := range a.Tags {
		if i > 0 {
			tags += ", "
		}
		tags += q(t)
	}
	tags += "]"
	kvs := []kv{{"brand", q(a.Brand)}, {"category", q(a.Category)}, {"color", q(a.Color)}, {"tags", tags},
		{"weight_g", strconv.Itoa(a.WeightG)}}
	if a.Material != "" {
		kvs = append(kvs, kv{"material", q(a.Material)})
	}
	slices.SortFunc(kvs, func(x, y kv) int {
		if c := cmp.Compare(len(x.k), len(y.k)); c != 0 {
			return c
		}
		return cmp.Compare(x.k, y.k)
	})
	s := "{"
	for i, e := range kvs {
		if i > 0 {
			s += ", "
		}
		s += q(e.k) + ": " + e.v
	}
	return s + "}"
}

// productInserts returns n insert messages of generated products, spread over the three
// suppliers, for relationMsg's table.
func productInserts(n int) [][]byte {
	msgs := make([][]byte, 0, n)
	for i := range n {
		s := i % len(fakedrop.Suppliers)
		p := fakedrop.New(fakedrop.Suppliers[s], 1).Product(i)
		vals := []string{strconv.Itoa(1_000_000 + i), strconv.Itoa(s + 1), p.SKU, p.Name, p.Description, p.Price,
			p.Currency, p.Status, jsonbText(p.Attributes), fmt.Sprintf("2026-12-01 16:27:%02d.%06d+00", i%60, (i*7919)%1_000_000)}
		b := []byte{'I'}
		b = binary.BigEndian.AppendUint32(b, 16400)
		b = append(b, 'N')
		msgs = append(msgs, append(b, tupleData(vals...)...))
	}
	return msgs
}

// BenchmarkDecodeProduct is the replicator's per-change work outside NATS: decoding a
// generated product's insert and writing its event.
func BenchmarkDecodeProduct(b *testing.B) {
	msgs := productInserts(1024)
	var size int
	for _, m := range msgs {
		size += len(m)
	}
	for _, f := range []event.Format{event.FormatNative, event.FormatDebezium} {
		b.Run(string(f), func(b *testing.B) {
			buf := make([]byte, 0, 2048)
			emit := func(c *event.Change) error {
				if f == event.FormatDebezium {
					buf = c.AppendDebezium(buf[:0])
				} else {
					buf = c.AppendJSON(buf[:0])
				}
				return nil
			}
			b.SetBytes(int64(size / len(msgs)))
			decodeAll(b, msgs, emit)
		})
	}
	b.Run("decode", func(b *testing.B) {
		decodeAll(b, msgs, func(*event.Change) error { return nil })
	})
}

// decodeAll decodes msgs round and round for b's loop, handing each change to emit, and
// reports the process's CPU per op beside the wall time.
func decodeAll(b *testing.B, msgs [][]byte, emit func(*event.Change) error) {
	d := newTestDecoder(b)
	b.ReportAllocs()
	i := 0
	cpu := startCPU()
	for b.Loop() {
		if _, err := d.decode(1, msgs[i%len(msgs)], emit); err != nil {
			b.Fatal(err)
		}
		i++
	}
	cpu.report(b)
}

// cpuClock reports a benchmark's process CPU time per op (cpu-ns/op): on a shared machine
// wall time per op moves with the load far more than CPU time does.
type cpuClock struct{ start time.Duration }

func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func startCPU() cpuClock { return cpuClock{processCPU()} }

func (c cpuClock) report(b *testing.B) {
	if b.N > 0 {
		b.ReportMetric(float64(processCPU()-c.start)/float64(b.N), "cpu-ns/op")
	}
}

// BenchmarkProductJSON is the event JSON of a generated product's insert alone, with the
// decoder's columns (keys written once per relation) and with plain ones.
func BenchmarkProductJSON(b *testing.B) {
	d := newTestDecoder(b)
	var c event.Change
	if _, err := d.decode(1, productInserts(1)[0], func(ch *event.Change) error { c = *ch; return nil }); err != nil {
		b.Fatal(err)
	}
	plain := c
	plain.After = nil
	for _, col := range c.After {
		plain.After = append(plain.After, event.Column{Name: col.Name, Value: col.Value})
	}
	for _, bc := range []struct {
		name string
		c    *event.Change
	}{{"keyed", &c}, {"plain", &plain}} {
		b.Run(bc.name, func(b *testing.B) {
			buf := make([]byte, 0, 2048)
			cpu := startCPU()
			for b.Loop() {
				buf = bc.c.AppendJSON(buf[:0])
			}
			cpu.report(b)
		})
	}
}
