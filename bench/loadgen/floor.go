package main

// `loadgen floor` serves the no-op admission answer from Go on one core, over the same
// TLS loop: the machine's own floor for the paced scenario, measured in the same run as
// the Python server, so a slow minute on a shared machine shows up in both.

import (
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
)

func serveFloor(args []string) error {
	fs := flag.NewFlagSet("loadgen floor", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:0", "address to serve on")
	cert := fs.String("cert", "", "PEM certificate (required)")
	key := fs.String("key", "", "PEM private key (required)")
	procs := fs.Int("gomaxprocs", 1, "OS threads running Go code")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *cert == "" || *key == "" {
		return fmt.Errorf("-cert and -key are required")
	}
	runtime.GOMAXPROCS(*procs)
	mux := http.NewServeMux()
	// What POST /noop of podvirt webhook does: read the review, answer allowed with its uid.
	mux.HandleFunc("/noop", func(w http.ResponseWriter, r *http.Request) {
		var review struct {
			APIVersion string `json:"apiVersion"`
			Request    struct {
				UID string `json:"uid"`
			} `json:"request"`
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, 3<<20))
		if err != nil || json.Unmarshal(body, &review) != nil || review.Request.UID == "" {
			http.Error(w, `{"error":"not an AdmissionReview"}`, http.StatusBadRequest)
			return
		}
		out, _ := json.Marshal(map[string]any{
			"apiVersion": review.APIVersion, "kind": "AdmissionReview",
			"response": map[string]any{"uid": review.Request.UID, "allowed": true}})
		w.Header().Set("Content-Type", "application/json")
		w.Write(out)
	})
	return serveTLS(*listen, *cert, *key, mux, true)
}

// serveTLS serves h over TLS on listen; the first line on stdout names the bound address
// (the benches start these servers on port 0 or reuse a port and read it back). Go's
// server offers HTTP/2 through ALPN unless http2 is false: then it speaks HTTP/1.1 only,
// as gunicorn does (a non-nil empty TLSNextProto is net/http's documented switch).
func serveTLS(listen, cert, key string, h http.Handler, http2 bool) error {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	fmt.Printf("listening https://%s\n", ln.Addr())
	srv := &http.Server{Handler: h}
	if !http2 {
		srv.TLSNextProto = map[string]func(*http.Server, *tls.Conn, http.Handler){}
	}
	return srv.ServeTLS(ln, cert, key)
}
