package sandbox

import (
	"fmt"
	"strings"
	"sync"
	"testing"
)

// Writers from several goroutines (exec's stdout and stderr copiers) while another reads; with
// Max, only the tail stays.
func TestOutput(t *testing.T) {
	var all, tail Output
	tail.Max = 10
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 100 {
				fmt.Fprintf(&all, "w%d-%03d\n", w, i)
				fmt.Fprintf(&tail, "w%d-%03d\n", w, i)
				_ = all.String()
			}
		})
	}
	wg.Wait()
	if n := strings.Count(all.String(), "\n"); n != 400 {
		t.Fatalf("kept %d lines of 400", n)
	}
	if got := tail.String(); len(got) != 10 || !strings.HasSuffix(got, "-099\n") {
		t.Fatalf("tail %q: want the last 10 bytes, ending with a writer's last line", got)
	}
}
