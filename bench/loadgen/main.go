// Command loadgen drives an HTTPS endpoint over keep-alive connections and prints one JSON
// line of latency and throughput.
//
// Closed loop (-rate 0): every connection sends its next request as soon as the previous
// answer is read, which measures peak throughput. Open loop (-rate R): request i is due at
// start + i/R whatever the server is doing; a free connection takes the next due request and
// its latency counts from the due time, so queueing behind a slow answer is measured instead
// of hidden (no coordinated omission).
//
// The client runs with GOMAXPROCS=1 by default so that, on a small machine, it leaves the
// other cores to the server it measures.
package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

type config struct {
	url        string
	caFile     string
	bodies     [][]byte
	conns      int
	rate       float64
	duration   time.Duration
	warmup     time.Duration
	timeout    time.Duration
	drain      time.Duration
	gomaxprocs int
}

// Result is the JSON line printed at the end; latencies are in milliseconds.
type Result struct {
	Mode       string  `json:"mode"`
	Conns      int     `json:"conns"`
	Rate       float64 `json:"rate"`
	Duration   float64 `json:"duration_s"`
	GoMaxProcs int     `json:"client_gomaxprocs"`
	Sent       int     `json:"sent"`
	OK         int     `json:"ok"`
	Errors     int     `json:"errors"`
	RPS        float64 `json:"rps"`
	P50        float64 `json:"p50_ms"`
	P90        float64 `json:"p90_ms"`
	P99        float64 `json:"p99_ms"`
	Max        float64 `json:"max_ms"`
	// Open loop: how late the client itself sent requests that found a connection idle
	// (timer and scheduling slack). If this is large, the client, not the server, is slow
	// and the latencies above are pessimistic.
	ClientLateP99 float64 `json:"client_late_p99_ms"`
	// Open loop: share of requests that fell due while every connection was busy.
	QueuedPct  float64 `json:"queued_pct"`
	FirstError string  `json:"first_error,omitempty"`
}

// sample is one measured request.
type sample struct {
	latency time.Duration // from the intended start to the end of the response body
	late    time.Duration // from the intended start to the actual send, if it waited for it
	queued  bool          // fell due while this connection was still busy
	ok      bool
	err     string
}

func main() {
	subcommands := map[string]func([]string) error{
		"floor": serveFloor, "extender-floor": serveExtenderFloor, "steadiness": measureSteadiness}
	if len(os.Args) > 1 && subcommands[os.Args[1]] != nil {
		if err := subcommands[os.Args[1]](os.Args[2:]); err != nil {
			fmt.Fprintf(os.Stderr, "loadgen %s: %v\n", os.Args[1], err)
			os.Exit(1)
		}
		return
	}
	cfg, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(2)
	}
	runtime.GOMAXPROCS(cfg.gomaxprocs)
	res, err := run(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
	out, _ := json.Marshal(res)
	fmt.Println(string(out))
}

func parseFlags(args []string) (config, error) {
	var cfg config
	var bodyFiles []string
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.StringVar(&cfg.url, "url", "", "https URL to POST to (required)")
	fs.StringVar(&cfg.caFile, "ca", "", "PEM CA bundle the server certificate must chain to (required)")
	fs.Func("body", "request body file; repeat for several, sent round-robin (required)",
		func(s string) error { bodyFiles = append(bodyFiles, s); return nil })
	fs.IntVar(&cfg.conns, "conns", 1, "keep-alive connections")
	fs.Float64Var(&cfg.rate, "rate", 0, "open loop at this many requests/s; 0 = closed loop")
	fs.DurationVar(&cfg.duration, "duration", 3*time.Second, "measured time")
	fs.DurationVar(&cfg.warmup, "warmup", 500*time.Millisecond, "unmeasured load before it")
	fs.DurationVar(&cfg.timeout, "timeout", 10*time.Second, "per-request timeout")
	fs.DurationVar(&cfg.drain, "drain", 2*time.Second,
		"open loop: requests still unsent this long after the end count as errors")
	fs.IntVar(&cfg.gomaxprocs, "gomaxprocs", 1, "client OS threads running Go code")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	switch {
	case cfg.url == "" || cfg.caFile == "" || len(bodyFiles) == 0:
		return cfg, errors.New("-url, -ca and at least one -body are required")
	case cfg.conns < 1 || cfg.gomaxprocs < 1:
		return cfg, errors.New("-conns and -gomaxprocs must be >= 1")
	case cfg.rate < 0 || math.IsInf(cfg.rate, 0) || math.IsNaN(cfg.rate):
		return cfg, errors.New("-rate must be a finite number >= 0")
	case cfg.duration <= 0 || cfg.warmup < 0:
		return cfg, errors.New("-duration must be > 0 and -warmup >= 0")
	}
	for _, name := range bodyFiles {
		b, err := os.ReadFile(name)
		if err != nil {
			return cfg, err
		}
		cfg.bodies = append(cfg.bodies, b)
	}
	return cfg, nil
}

// newClient gives one connection's client: a transport of its own holding a single
// keep-alive connection, so -conns really is the number of TCP/TLS connections.
func newClient(cfg config, roots *x509.CertPool) *http.Client {
	return &http.Client{Timeout: cfg.timeout, Transport: &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		MaxConnsPerHost:     1,
		MaxIdleConnsPerHost: 1,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
	}}
}

func send(c *http.Client, url string, body []byte) error {
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	// Read to the end, or the transport cannot reuse the connection.
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return nil
}

func run(cfg config) (Result, error) {
	pem, err := os.ReadFile(cfg.caFile)
	if err != nil {
		return Result{}, err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return Result{}, fmt.Errorf("%s holds no PEM certificate", cfg.caFile)
	}
	clients := make([]*http.Client, cfg.conns)
	for i := range clients {
		clients[i] = newClient(cfg, roots)
		// Handshake before the clock starts: TLS setup is not what is measured.
		if err := send(clients[i], cfg.url, cfg.bodies[0]); err != nil {
			return Result{}, fmt.Errorf("first request on connection %d: %w", i, err)
		}
	}

	var (
		next     atomic.Int64 // open loop: index of the next due request
		sent     atomic.Int64 // round-robin body index
		interval time.Duration
		mu       sync.Mutex
		samples  []sample
		wg       sync.WaitGroup
	)
	if cfg.rate > 0 {
		interval = time.Duration(float64(time.Second) / cfg.rate)
	}
	start := time.Now()
	measureFrom, end := start.Add(cfg.warmup), start.Add(cfg.warmup+cfg.duration)
	for _, c := range clients {
		wg.Add(1)
		timer, err := newSleeper()
		if err != nil {
			return Result{}, err
		}
		defer timer.close()
		go func(c *http.Client, timer *sleeper) {
			defer wg.Done()
			mine := make([]sample, 0, 1024)
			for {
				var due time.Time
				queued := false
				if interval > 0 {
					due = start.Add(time.Duration(next.Add(1)-1) * interval)
					if !due.Before(end) || time.Now().After(end.Add(cfg.drain)) {
						break
					}
					if wait := time.Until(due); wait > 0 {
						if err := timer.sleep(wait); err != nil {
							panic(err) // a timerfd that stops working is a broken host
						}
					} else {
						queued = true
					}
				} else if due = time.Now(); !due.Before(end) {
					break
				}
				began := time.Now()
				err := send(c, cfg.url, cfg.bodies[int(sent.Add(1)-1)%len(cfg.bodies)])
				if due.Before(measureFrom) {
					continue
				}
				s := sample{latency: time.Since(due), queued: queued, ok: err == nil}
				if !queued {
					s.late = began.Sub(due)
				}
				if err != nil {
					s.err = err.Error()
				}
				mine = append(mine, s)
			}
			mu.Lock()
			samples = append(samples, mine...)
			mu.Unlock()
		}(c, timer)
	}
	wg.Wait()
	res := summarize(cfg, samples)
	if interval > 0 {
		// Requests that fell due in the measured window but were never sent (the server
		// fell too far behind) are failures too, or an overloaded run would look clean.
		due := func(d time.Duration) int { return int((d + interval - 1) / interval) }
		if dropped := due(cfg.warmup+cfg.duration) - due(cfg.warmup) - res.Sent; dropped > 0 {
			res.Sent += dropped
			res.Errors += dropped
			if res.FirstError == "" {
				res.FirstError = fmt.Sprintf("%d requests never sent: server too far behind", dropped)
			}
		}
	}
	return res, nil
}

func summarize(cfg config, samples []sample) Result {
	res := Result{Mode: "closed", Conns: cfg.conns, Rate: cfg.rate, GoMaxProcs: cfg.gomaxprocs,
		Duration: cfg.duration.Seconds(), Sent: len(samples)}
	if cfg.rate > 0 {
		res.Mode = "open"
	}
	var lat, late []time.Duration
	queued := 0
	for _, s := range samples {
		if s.queued {
			queued++
		} else {
			late = append(late, s.late)
		}
		if !s.ok {
			res.Errors++
			if res.FirstError == "" {
				res.FirstError = s.err
			}
			continue
		}
		lat = append(lat, s.latency)
	}
	res.OK = len(lat)
	res.RPS = float64(res.OK) / cfg.duration.Seconds()
	res.P50, res.P90, res.P99 = pct(lat, 0.50), pct(lat, 0.90), pct(lat, 0.99)
	res.Max = pct(lat, 1)
	if cfg.rate > 0 && len(samples) > 0 {
		res.ClientLateP99 = pct(late, 0.99)
		res.QueuedPct = math.Round(1000*float64(queued)/float64(len(samples))) / 10
	}
	return res
}

// pct is the q-quantile (nearest rank) in milliseconds; it sorts d in place.
func pct(d []time.Duration, q float64) float64 {
	if len(d) == 0 {
		return 0
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	i := int(math.Ceil(q*float64(len(d)))) - 1
	return math.Round(float64(d[max(i, 0)])/1e3) / 1e3
}
