package sandbox

import (
	"sync"
)

// Output collects a subprocess's output while others read it: exec copies stdout and stderr
// from goroutines of its own. With Max set it keeps only the last Max bytes, so a server that
// runs for hours does not grow it without bound.
type Output struct {
	Max int // 0: keep everything

	mu  sync.Mutex
	buf []byte
}

func (o *Output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.buf = append(o.buf, p...)
	if o.Max > 0 && len(o.buf) > o.Max {
		o.buf = append([]byte(nil), o.buf[len(o.buf)-o.Max:]...)
	}
	return len(p), nil
}

// String returns what was written (its tail, with Max set).
func (o *Output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return string(o.buf)
}
