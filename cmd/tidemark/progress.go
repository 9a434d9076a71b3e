package main

import (
	"io"
	"os"
	"sync"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"golang.org/x/term"
)

// progressBar draws an mpb bar on stderr when stderr is a terminal, and nothing otherwise, so
// logs and --json output stay clean in pipes and CI.
type progressBar struct {
	p   *mpb.Progress
	bar *mpb.Bar
}

// newProgressBar starts a bar for total units (0 when unknown yet); unit names what is counted.
func newProgressBar(name string, total int64, unit string) *progressBar {
	if !stderrIsTerminal() {
		return &progressBar{}
	}
	p := mpb.New(mpb.WithOutput(os.Stderr), mpb.WithWidth(48))
	bar := p.AddBar(total,
		mpb.PrependDecorators(decor.Name(name, decor.WCSyncSpaceR), decor.CountersNoUnit("%d / %d "+unit, decor.WCSyncWidth)),
		mpb.AppendDecorators(decor.Percentage(decor.WCSyncSpace), decor.AverageSpeed(0, " %.0f/s", decor.WCSyncSpace)),
	)
	return &progressBar{p: p, bar: bar}
}

// Set moves the bar to done of total.
func (b *progressBar) Set(done, total int64) {
	if b.bar == nil {
		return
	}
	b.bar.SetTotal(total, false)
	b.bar.SetCurrent(done)
}

// Done completes (ok) or drops (!ok) the bar and waits for the last redraw.
func (b *progressBar) Done(ok bool) {
	if b.bar == nil {
		return
	}
	if ok {
		b.bar.SetTotal(-1, true)
	} else {
		b.bar.Abort(false)
	}
	b.p.Wait()
}

// readProgress wraps r, of size bytes (0 when unknown), in a bar of the bytes read, on a
// terminal; elsewhere it returns r as it is. stop removes the bar; it may be called again.
func readProgress(name string, size int64, r io.Reader) (_ io.Reader, stop func()) {
	if !stderrIsTerminal() {
		return r, func() {}
	}
	p := mpb.New(mpb.WithOutput(os.Stderr), mpb.WithWidth(40))
	bar := p.AddBar(size,
		mpb.PrependDecorators(decor.Name(name+" "), decor.CountersKibiByte("% .1f / % .1f")),
		mpb.AppendDecorators(decor.Percentage(), decor.Name(" "), decor.AverageSpeed(decor.SizeB1024(0), "% .1f")),
	)
	var once sync.Once
	stop = func() {
		once.Do(func() {
			bar.Abort(false)
			p.Wait()
		})
	}
	pr, err := bar.ProxyReader(r)
	if err != nil {
		return r, stop
	}
	return pr, stop
}

func stderrIsTerminal() bool { return term.IsTerminal(int(os.Stderr.Fd())) }
