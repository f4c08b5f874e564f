package main

// `loadgen extender-floor` is the least work a node-cache-capable scheduler extender can
// do, in Go: it watches pods and nodes (decoding every event, as any extender that keeps
// its own state must), passes every node the scheduler offers, scores every node alike
// (an empty HostPriorityList: scores relative to the lowest, as podvirt's extender sends
// them), and binds by creating the Binding. No accounting, no decisions. Swapped in for podvirt's extender on the same port
// and certificate, it shows what the extender protocol itself costs kube-scheduler and the
// API server on this machine: the floor under any extender, whatever its language.

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"sync/atomic"
	"time"
)

// The wire types of k8s.io/kube-scheduler/extender/v1, only the fields used here.
type extenderArgs struct {
	Pod struct {
		Metadata struct {
			Name      string `json:"name"`
			Namespace string `json:"namespace"`
		} `json:"metadata"`
	} `json:"Pod"`
	NodeNames *[]string `json:"NodeNames"`
}

type filterResult struct {
	NodeNames                  *[]string         `json:"NodeNames"`
	FailedNodes                map[string]string `json:"FailedNodes"`
	FailedAndUnresolvableNodes map[string]string `json:"FailedAndUnresolvableNodes"`
	Error                      string            `json:"Error"`
}

type hostPriority struct {
	Host  string `json:"Host"`
	Score int64  `json:"Score"`
}

type bindingArgs struct {
	PodName      string `json:"PodName"`
	PodNamespace string `json:"PodNamespace"`
	PodUID       string `json:"PodUID"`
	Node         string `json:"Node"`
}

// watchedObject is what an extender's cache needs from a pod or node event.
type watchedObject struct {
	Type   string `json:"type"`
	Object struct {
		Metadata struct {
			Name            string            `json:"name"`
			Namespace       string            `json:"namespace"`
			ResourceVersion string            `json:"resourceVersion"`
			Annotations     map[string]string `json:"annotations"`
		} `json:"metadata"`
		Spec struct {
			NodeName   string `json:"nodeName"`
			Containers []struct {
				Resources struct {
					Requests map[string]string `json:"requests"`
				} `json:"resources"`
			} `json:"containers"`
		} `json:"spec"`
		Status struct {
			Phase       string            `json:"phase"`
			Allocatable map[string]string `json:"allocatable"`
		} `json:"status"`
	} `json:"object"`
}

type apiClient struct {
	base   string
	client *http.Client
	events atomic.Int64
}

func newAPIClient(base, caFile, certFile, keyFile string) (*apiClient, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no PEM certificates", caFile)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	transport := &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}},
		MaxIdleConnsPerHost: 16,
	}
	return &apiClient{base: base, client: &http.Client{Transport: transport}}, nil
}

// watch lists then watches one kind forever, decoding each event; it restarts from a
// fresh list whenever the stream ends or fails.
func (a *apiClient) watch(path string) {
	for {
		if err := a.watchOnce(path); err != nil {
			fmt.Fprintf(os.Stderr, "extender-floor: watch %s: %v\n", path, err)
			time.Sleep(time.Second)
		}
	}
}

func (a *apiClient) watchOnce(path string) error {
	resp, err := a.client.Get(a.base + path)
	if err != nil {
		return err
	}
	var list struct {
		Metadata struct {
			ResourceVersion string `json:"resourceVersion"`
		} `json:"metadata"`
		Items []json.RawMessage `json:"items"`
	}
	err = json.NewDecoder(resp.Body).Decode(&list)
	resp.Body.Close()
	if err != nil {
		return err
	}
	resp, err = a.client.Get(a.base + path + "?watch=1&allowWatchBookmarks=true&resourceVersion=" +
		list.Metadata.ResourceVersion)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	lines := bufio.NewScanner(resp.Body)
	lines.Buffer(make([]byte, 1<<20), 16<<20)
	for lines.Scan() {
		var ev watchedObject
		if err := json.Unmarshal(lines.Bytes(), &ev); err != nil {
			return err
		}
		a.events.Add(1)
	}
	return lines.Err()
}

func (a *apiClient) bind(b bindingArgs) error {
	body, _ := json.Marshal(map[string]any{
		"apiVersion": "v1", "kind": "Binding",
		"metadata": map[string]any{"name": b.PodName, "namespace": b.PodNamespace, "uid": b.PodUID},
		"target":   map[string]any{"apiVersion": "v1", "kind": "Node", "name": b.Node}})
	resp, err := a.client.Post(fmt.Sprintf("%s/api/v1/namespaces/%s/bindings", a.base, b.PodNamespace),
		"application/json", bytes.NewReader(body))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	reply, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("binding %s/%s: %s: %s", b.PodNamespace, b.PodName, resp.Status, reply)
	}
	return nil
}

func serveExtenderFloor(args []string) error {
	fs := flag.NewFlagSet("loadgen extender-floor", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:0", "address to serve on")
	cert := fs.String("cert", "", "PEM serving certificate (required)")
	key := fs.String("key", "", "PEM serving key (required)")
	apiserver := fs.String("apiserver", "", "API server URL, https://host:port (required)")
	apiCA := fs.String("api-ca", "", "PEM CA of the API server (required)")
	apiCert := fs.String("api-cert", "", "PEM client certificate for the API server (required)")
	apiKey := fs.String("api-key", "", "PEM client key for the API server (required)")
	procs := fs.Int("gomaxprocs", 2, "OS threads running Go code")
	http1 := fs.Bool("http1", false, "HTTP/1.1 only, like podvirt's extender (default: HTTP/2 "+
		"offered, which kube-scheduler's client takes: one multiplexed connection)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	for name, v := range map[string]string{"cert": *cert, "key": *key, "apiserver": *apiserver,
		"api-ca": *apiCA, "api-cert": *apiCert, "api-key": *apiKey} {
		if v == "" {
			return fmt.Errorf("-%s is required", name)
		}
	}
	runtime.GOMAXPROCS(*procs)
	api, err := newAPIClient(*apiserver, *apiCA, *apiCert, *apiKey)
	if err != nil {
		return err
	}
	go api.watch("/api/v1/pods")
	go api.watch("/api/v1/nodes")
	return serveTLS(*listen, *cert, *key, extenderFloorHandler(api), !*http1)
}

// binder is what the handlers need from the API client; tests substitute a fake.
type binder interface {
	bind(bindingArgs) error
	eventsSeen() int64
}

func (a *apiClient) eventsSeen() int64 { return a.events.Load() }

func extenderFloorHandler(api binder) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/filter", func(w http.ResponseWriter, r *http.Request) {
		var in extenderArgs
		if json.NewDecoder(r.Body).Decode(&in) != nil {
			http.Error(w, `{"error":"not ExtenderArgs"}`, http.StatusBadRequest)
			return
		}
		reply(w, filterResult{NodeNames: in.NodeNames, FailedNodes: map[string]string{},
			FailedAndUnresolvableNodes: map[string]string{}})
	})
	mux.HandleFunc("/prioritize", func(w http.ResponseWriter, r *http.Request) {
		var in extenderArgs
		if json.NewDecoder(r.Body).Decode(&in) != nil {
			http.Error(w, `{"error":"not ExtenderArgs"}`, http.StatusBadRequest)
			return
		}
		// Every node scored alike, sent as podvirt sends scores: relative to the lowest,
		// hosts at the lowest left out (kube-scheduler adds 0 for them). So: none.
		reply(w, []hostPriority{})
	})
	mux.HandleFunc("/bind", func(w http.ResponseWriter, r *http.Request) {
		var in bindingArgs
		if json.NewDecoder(r.Body).Decode(&in) != nil {
			http.Error(w, `{"error":"not ExtenderBindingArgs"}`, http.StatusBadRequest)
			return
		}
		result := map[string]string{"Error": ""}
		if err := api.bind(in); err != nil {
			result["Error"] = err.Error()
		}
		reply(w, result)
	})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		reply(w, map[string]any{"status": "ok", "watch_events": api.eventsSeen()})
	})
	return mux
}

func reply(w http.ResponseWriter, v any) {
	out, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.Write(out)
}
