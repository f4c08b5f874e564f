package main

import (
	"encoding/pem"
	"errors"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestPct(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		d := make([]time.Duration, len(v))
		for i, x := range v {
			d[i] = time.Duration(x) * time.Millisecond
		}
		return d
	}
	for _, tc := range []struct {
		name string
		d    []time.Duration
		q    float64
		want float64
	}{
		{"empty", nil, 0.99, 0},
		{"one", ms(7), 0.5, 7},
		{"median of four is the second", ms(4, 1, 3, 2), 0.5, 2},
		{"p99 of 100 is the 99th", ms(func() []int {
			v := make([]int, 100)
			for i := range v {
				v[i] = 100 - i
			}
			return v
		}()...), 0.99, 99},
		{"max", ms(3, 9, 1), 1, 9},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := pct(tc.d, tc.q); got != tc.want {
				t.Fatalf("pct(%v) = %v, want %v", tc.q, got, tc.want)
			}
		})
	}
}

// server serves TLS; answer(i) gives request i (from 1) its delay and status.
func server(t *testing.T, answer func(i int64) (time.Duration, int)) config {
	t.Helper()
	var n atomic.Int64
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		delay, status := answer(n.Add(1))
		time.Sleep(delay)
		w.WriteHeader(status)
	}))
	t.Cleanup(srv.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	cert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(ca, cert, 0o600); err != nil {
		t.Fatal(err)
	}
	return config{url: srv.URL, caFile: ca, bodies: [][]byte{[]byte("{}")}, conns: 1,
		duration: time.Second, timeout: 5 * time.Second, drain: 2 * time.Second,
		gomaxprocs: 1}
}

// A 300 ms stall on the only connection at 100/s delays the ~30 requests that fall due
// meanwhile: the open loop must count that wait; a closed loop reports one slow request.
func TestStallIsMeasured(t *testing.T) {
	stall := func(i int64) (time.Duration, int) {
		if i == 20 {
			return 300 * time.Millisecond, http.StatusOK
		}
		return 0, http.StatusOK
	}
	for _, tc := range []struct {
		name string
		rate float64
		ok   func(r Result) bool
	}{
		{"open loop counts the queue behind the stall", 100, func(r Result) bool {
			return r.Sent == 100 && r.P90 >= 100 && r.QueuedPct >= 10 && r.QueuedPct <= 60
		}},
		{"closed loop sees one slow request", 0, func(r Result) bool {
			return r.P90 < 100 && r.Max >= 250
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := server(t, stall)
			cfg.rate = tc.rate
			res, err := run(cfg)
			if err != nil || res.Errors != 0 || !tc.ok(res) {
				t.Fatalf("got %+v, %v", res, err)
			}
		})
	}
}

func TestStatusOtherThan200IsAnError(t *testing.T) {
	cfg := server(t, func(i int64) (time.Duration, int) {
		if i%2 == 0 {
			return 0, http.StatusInternalServerError
		}
		return 0, http.StatusOK
	})
	cfg.rate = 50
	res, err := run(cfg)
	if err != nil || res.Errors == 0 || res.OK == 0 || res.FirstError != "HTTP 500" {
		t.Fatalf("want some HTTP 500 errors, got %+v, %v", res, err)
	}
}

type fakeBinder struct {
	got []bindingArgs
	err error
}

func (f *fakeBinder) bind(b bindingArgs) error { f.got = append(f.got, b); return f.err }
func (f *fakeBinder) eventsSeen() int64        { return 7 }

func TestExtenderFloor(t *testing.T) {
	api := &fakeBinder{}
	srv := httptest.NewServer(extenderFloorHandler(api))
	defer srv.Close()
	post := func(path, body string) (int, string) {
		t.Helper()
		resp, err := http.Post(srv.URL+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, strings.TrimSpace(string(out))
	}
	args := `{"Pod":{"metadata":{"name":"vm","namespace":"ns"}},"NodeNames":["a","b"]}`
	if code, out := post("/filter", args); code != 200 ||
		out != `{"NodeNames":["a","b"],"FailedNodes":{},"FailedAndUnresolvableNodes":{},"Error":""}` {
		t.Errorf("filter: %d %s", code, out)
	}
	if code, out := post("/prioritize", args); code != 200 ||
		out != `[]` {
		t.Errorf("prioritize: %d %s", code, out)
	}
	bind := `{"PodName":"vm","PodNamespace":"ns","PodUID":"u1","Node":"a"}`
	if code, out := post("/bind", bind); code != 200 || out != `{"Error":""}` {
		t.Errorf("bind: %d %s", code, out)
	}
	if len(api.got) != 1 || api.got[0] != (bindingArgs{"vm", "ns", "u1", "a"}) {
		t.Errorf("bind called with %+v", api.got)
	}
	api.err = errors.New("conflict")
	if code, out := post("/bind", bind); code != 200 || out != `{"Error":"conflict"}` {
		t.Errorf("failed bind: %d %s", code, out)
	}
	for _, path := range []string{"/filter", "/prioritize", "/bind"} {
		if code, _ := post(path, "{not json"); code != 400 {
			t.Errorf("%s with a malformed body: %d, want 400", path, code)
		}
	}
}

func TestSteadinessSummary(t *testing.T) {
	us := time.Microsecond
	got := summarizeWindows([]window{
		{elapsed: 1000 * us, chunks: 10}, // the median chunk's pace
		{elapsed: 1250 * us, chunks: 10}, // 1.25x
		{elapsed: 1600 * us, chunks: 10}, // 1.6x
		{elapsed: 1190 * us, chunks: 10}, // just under 1.2x
	}, 100*us)
	want := Steadiness{ChunkUS: 100, Windows: 4, Slower12: 50, Slower15: 25, WorstRatio: 1.6}
	if got.ChunkUS != want.ChunkUS || got.Windows != want.Windows || got.Slower12 != want.Slower12 ||
		got.Slower15 != want.Slower15 || math.Abs(got.WorstRatio-want.WorstRatio) > 1e-9 {
		t.Fatalf("summarize = %+v, want %+v", got, want)
	}
	if empty := summarizeWindows(nil, 100*us); empty.Windows != 0 || empty.WorstRatio != 0 {
		t.Fatalf("no windows: %+v", empty)
	}
}

func TestSteadinessRuns(t *testing.T) {
	if err := measureSteadiness([]string{"-duration", "200ms", "-window", "50ms"}); err != nil {
		t.Fatal(err)
	}
	if err := measureSteadiness([]string{"-duration", "10ms", "-window", "50ms"}); err == nil {
		t.Fatal("a window longer than the run was accepted")
	}
}
