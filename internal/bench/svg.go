package bench

import (
	"fmt"
	"image/color"
	"math"
	"os"
	"sync"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgsvg"
)

var (
	fastColor = color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}
	slowColor = color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff}
	rssColor  = color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff}
)

// drawMixed plots each job's latency against its submission time, fast
// and slow jobs apart, the synchronous run beside the async one, on the
// same logarithmic latency axis.
func drawMixed(file string, res *MixedResult, async *phaseResult, slowA *sync.Map, syncRun *phaseResult, slowS *sync.Map) error {
	lo, hi := math.Inf(1), math.Inf(-1)
	type series struct{ fast, slow plotter.XYs }
	build := func(r *phaseResult, slow *sync.Map) series {
		var s series
		for _, id := range r.order {
			a, ok := r.arrivals[id]
			if !ok {
				continue
			}
			at := r.submitted[id].Sub(r.start).Seconds()
			lat := math.Max(a.At.Sub(r.submitted[id]).Seconds(), 1e-3)
			lo, hi = math.Min(lo, lat), math.Max(hi, lat)
			if _, isSlow := slow.Load(id); isSlow {
				s.slow = append(s.slow, plotter.XY{X: at, Y: lat})
			} else {
				s.fast = append(s.fast, plotter.XY{X: at, Y: lat})
			}
		}
		return s
	}
	runs := []struct {
		title string
		s     series
	}{
		{fmt.Sprintf("async (maxInFlight %d): fast p95 %.0f ms", res.Async.MaxInFlight, res.Async.FastP95Ms), build(async, slowA)},
		{fmt.Sprintf("sync (maxInFlight 1): fast p95 %.0f ms", res.Sync.FastP95Ms), build(syncRun, slowS)},
	}
	row := make([]*plot.Plot, len(runs))
	for i, run := range runs {
		p := plot.New()
		p.Title.Text = run.title
		p.X.Label.Text = "submitted at (s)"
		p.Y.Label.Text = "submission to response (s, log)"
		p.Y.Scale = plot.LogScale{}
		p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
		p.Y.Min, p.Y.Max = lo/1.5, hi*3
		p.Legend.Top, p.Legend.Left = true, true
		p.Legend.XOffs, p.Legend.YOffs = vg.Points(8), -vg.Points(4)
		for _, part := range []struct {
			name string
			xys  plotter.XYs
			c    color.Color
		}{
			{fmt.Sprintf("fast (%d ms upstream)", res.FastMs), run.s.fast, fastColor},
			{fmt.Sprintf("slow (%d ms upstream)", res.SlowMs), run.s.slow, slowColor},
		} {
			if len(part.xys) == 0 {
				continue
			}
			sc, err := plotter.NewScatter(part.xys)
			if err != nil {
				return fmt.Errorf("plotting: %w", err)
			}
			sc.GlyphStyle.Color = part.c
			sc.GlyphStyle.Radius = vg.Points(2)
			sc.GlyphStyle.Shape = draw.CircleGlyph{}
			p.Add(sc)
			p.Legend.Add(part.name, sc)
		}
		p.Add(plotter.NewGrid())
		row[i] = p
	}
	return saveTiles(file, [][]*plot.Plot{row}, 12*vg.Inch, 5*vg.Inch)
}

// drawConcurrency plots concurrent upstream calls, the portal's in-flight
// gauge and the portal's RSS over time.
func drawConcurrency(file string, res *ConcurrencyResult, r *phaseResult) error {
	var upstream, gauge, rss plotter.XYs
	for _, s := range r.samples {
		t := s.At.Seconds()
		upstream = append(upstream, plotter.XY{X: t, Y: float64(s.UpstreamActive)})
		if s.PortalInFlight >= 0 {
			gauge = append(gauge, plotter.XY{X: t, Y: s.PortalInFlight})
		}
		rss = append(rss, plotter.XY{X: t, Y: float64(s.RSS) / mib})
	}
	if len(upstream) == 0 {
		return fmt.Errorf("no samples of the portal process")
	}
	top := plot.New()
	top.Title.Text = fmt.Sprintf("%d jobs of %d ms: peak %d concurrent upstream calls", res.Jobs, res.LatencyMs, res.PeakInFlight)
	top.X.Label.Text = "seconds since the portal started"
	top.Y.Label.Text = "jobs in flight"
	top.Legend.Top, top.Legend.Left = true, true
	top.Legend.XOffs, top.Legend.YOffs = vg.Points(8), -vg.Points(4)
	bottom := plot.New()
	bottom.Title.Text = fmt.Sprintf("portal RSS: peak %.0f MiB (%.1f KiB per in-flight job)", res.PortalPeakRSSMiB, res.RSSPerInFlightKiB)
	bottom.X.Label.Text = top.X.Label.Text
	bottom.Y.Label.Text = "RSS (MiB)"
	for _, l := range []struct {
		p    *plot.Plot
		name string
		xys  plotter.XYs
		c    color.Color
	}{
		{top, "upstream concurrent calls", upstream, fastColor},
		{top, "kafkasend_portal_in_flight_jobs", gauge, slowColor},
		{bottom, "VmRSS", rss, rssColor},
	} {
		if len(l.xys) == 0 {
			continue
		}
		line, err := plotter.NewLine(l.xys)
		if err != nil {
			return fmt.Errorf("plotting: %w", err)
		}
		line.Color = l.c
		line.Width = vg.Points(1.5)
		l.p.Add(line)
		l.p.Legend.Add(l.name, line)
	}
	top.Add(plotter.NewGrid())
	bottom.Add(plotter.NewGrid())
	return saveTiles(file, [][]*plot.Plot{{top}, {bottom}}, 10*vg.Inch, 8*vg.Inch)
}

// saveTiles draws plots (rows of columns) into one SVG file.
func saveTiles(file string, plots [][]*plot.Plot, w, h vg.Length) error {
	img := vgsvg.New(w, h)
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: len(plots), Cols: len(plots[0]), PadX: vg.Millimeter * 4, PadY: vg.Millimeter * 4,
		PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2, PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 2}
	canvases := plot.Align(plots, tiles, dc)
	for i := range plots {
		for j, p := range plots[i] {
			if p != nil {
				p.Draw(canvases[i][j])
			}
		}
	}
	f, err := os.Create(file)
	if err != nil {
		return fmt.Errorf("creating %s: %w", file, err)
	}
	if _, err := img.WriteTo(f); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", file, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", file, err)
	}
	return nil
}
