package main

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/google/pprof/profile"
	"github.com/tidemark/tidemark/internal/cpuprofile"
)

// encoderParts names the encoder's work by the functions process calls, in the order of a
// batch. A sample counts for the first of them found walking its stack from the root, so what
// they call (pgx, encoding/json, the allocator and the GC assists it triggers) counts with them.
var encoderParts = []struct{ part, prefix string }{
	{"JSON decode", "github.com/tidemark/tidemark/encoder.decode"},
	{"text", "github.com/tidemark/tidemark/encoder.fillText"},
	{"text", "github.com/tidemark/tidemark/encoder.Text"},
	{"text", "github.com/tidemark/tidemark/encoder.stringCol"},
	{"content hash", "github.com/tidemark/tidemark/encoder.ContentHash"},
	{"read stored hashes", "github.com/tidemark/tidemark/encoder.(*Store).hashes"},
	{"embed", "github.com/tidemark/tidemark/encoder.(*Encoder).embed"},
	{"vector write", "github.com/tidemark/tidemark/encoder.(*Store)."},
	{"vector write", "github.com/jackc/pgx/v5.(*dbTx)."},
	{"NATS fetch and ack", "github.com/nats-io/nats.go"},
	{"GC (background)", "runtime.gcBgMarkWorker"},
}

// splitProfile reads a CPU profile of tidemark encode and returns its CPU-seconds by part.
func splitProfile(path string) ([]cpuLine, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	p, err := profile.Parse(f)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	vi := -1
	for i, st := range p.SampleType {
		if st.Type == "cpu" {
			vi = i
		}
	}
	if vi < 0 {
		return nil, fmt.Errorf("%s: not a CPU profile", path)
	}
	by := map[string]time.Duration{}
	var order []string
	for _, s := range p.Sample {
		part := ""
		inProcess := false
	stack:
		for i := len(s.Location) - 1; i >= 0; i-- { // root first
			lines := s.Location[i].Line
			for j := len(lines) - 1; j >= 0; j-- { // inlined callers first
				fn := lines[j].Function
				if fn == nil {
					continue
				}
				if strings.HasPrefix(fn.Name, "github.com/tidemark/tidemark/encoder.(*Encoder).process") {
					inProcess = true
				}
				for _, ep := range encoderParts {
					if strings.HasPrefix(fn.Name, ep.prefix) {
						part = ep.part
						break stack
					}
				}
			}
		}
		switch {
		case part != "":
		case inProcess:
			part = "batching and coalescing"
		default:
			part = "other (runtime, metrics, logging)"
		}
		if _, ok := by[part]; !ok {
			order = append(order, part)
		}
		by[part] += time.Duration(s.Value[vi])
	}
	lines := make([]cpuLine, 0, len(by))
	for _, part := range order {
		lines = append(lines, cpuLine{Role: part, Seconds: by[part].Seconds()})
	}
	sortLines(lines)
	return lines, nil
}

// profileSelf CPU-profiles this process (the embedded nats-server, mostly) into path until
// the returned function is called; it does nothing when path is empty or on is false.
func profileSelf(path string, on bool) (func(), error) {
	if path == "" || !on {
		return func() {}, nil
	}
	return cpuprofile.Start(path)
}
