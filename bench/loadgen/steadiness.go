package main

// `loadgen steadiness` keeps one core busy with fixed chunks of work and reports how much
// slower than the median chunk's pace each window ran. On a virtual machine a vCPU's
// speed can drop for tens of milliseconds while nothing in the guest competes for it
// (steal time stays 0): a server near saturation sees that as a queue, and its p99 as the
// tail. The webhook bench prints it beside the latencies it measures in the same minutes.

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"runtime"
	"sort"
	"time"
)

// Steadiness is the JSON line `loadgen steadiness` prints.
type Steadiness struct {
	ChunkUS    float64 `json:"chunk_us"`       // the median chunk
	Windows    int     `json:"windows"`        // windows measured
	Slower12   float64 `json:"slower_1_2_pct"` // windows >= 1.2x the median chunk's pace
	Slower15   float64 `json:"slower_1_5_pct"`
	WorstRatio float64 `json:"worst_window"`
}

// window is one stretch of back-to-back chunks: how long it took, and how many it ran.
type window struct {
	elapsed time.Duration
	chunks  int
}

// summarizeWindows compares each window's pace with the median chunk's.
func summarizeWindows(windows []window, median time.Duration) Steadiness {
	s := Steadiness{ChunkUS: float64(median) / 1e3, Windows: len(windows)}
	if len(windows) == 0 || median <= 0 {
		return s
	}
	slow12, slow15 := 0, 0
	for _, w := range windows {
		ratio := float64(w.elapsed) / (float64(w.chunks) * float64(median))
		if ratio >= 1.2 {
			slow12++
		}
		if ratio >= 1.5 {
			slow15++
		}
		if ratio > s.WorstRatio {
			s.WorstRatio = ratio
		}
	}
	s.Slower12 = 100 * float64(slow12) / float64(len(windows))
	s.Slower15 = 100 * float64(slow15) / float64(len(windows))
	return s
}

var sink uint64 // keeps the compiler from dropping the work

// table is what a chunk reads: 4 MiB, past the core's own caches, like an interpreter's
// working set; a pure register loop did not see the slow windows the server met.
var table = func() []uint32 {
	t := make([]uint32, 1<<20)
	for i := range t {
		t[i] = uint32(i*2654435761) >> 12 // scattered indexes into t
	}
	return t
}()

// chunk is a fixed amount of work: dependent reads scattered over table.
func chunk(steps int) {
	i := uint32(sink) & (1<<20 - 1)
	for n := 0; n < steps; n++ {
		i = (table[i] + uint32(n)) & (1<<20 - 1)
	}
	sink = uint64(i)
}

func measureSteadiness(args []string) error {
	fs := flag.NewFlagSet("loadgen steadiness", flag.ContinueOnError)
	duration := fs.Duration("duration", 5*time.Second, "measured time")
	span := fs.Duration("window", 50*time.Millisecond, "window length")
	steps := fs.Int("steps", 20000, "reads per chunk")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *duration <= 0 || *span <= 0 || *steps < 1 || *span > *duration {
		return errors.New("-duration and -window must be > 0 (window <= duration), -steps >= 1")
	}
	runtime.GOMAXPROCS(1)
	runtime.LockOSThread()
	for i := 0; i < 50; i++ { // warm up: caches, page faults, the CPU's clock
		chunk(*steps)
	}
	var windows []window
	var chunks []time.Duration
	for end := time.Now().Add(*duration); time.Now().Before(end); {
		var w window
		for w.elapsed < *span {
			start := time.Now()
			chunk(*steps)
			d := time.Since(start)
			chunks = append(chunks, d)
			w.elapsed += d
			w.chunks++
		}
		windows = append(windows, w)
	}
	sort.Slice(chunks, func(a, b int) bool { return chunks[a] < chunks[b] })
	out, _ := json.Marshal(summarizeWindows(windows, chunks[len(chunks)/2]))
	fmt.Println(string(out))
	return nil
}
