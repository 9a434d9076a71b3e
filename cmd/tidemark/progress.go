package main

import (
	"os"

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
	if !term.IsTerminal(int(os.Stderr.Fd())) {
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
