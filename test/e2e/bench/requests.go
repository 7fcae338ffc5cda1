package bench

import (
	"bufio"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// auditEvent is what counting needs of one line of kube-apiserver's JSON
// audit log (an audit.k8s.io/v1 Event).
type auditEvent struct {
	Stage     string `json:"stage"`
	Verb      string `json:"verb"`
	UserAgent string `json:"userAgent"`
	ObjectRef *struct {
		Resource    string `json:"resource"`
		Subresource string `json:"subresource"`
	} `json:"objectRef"`
	RequestReceivedTimestamp metav1.MicroTime `json:"requestReceivedTimestamp"`
}

// requests counts API requests by client and by request kind ("create
// persistentvolumes", "update persistentvolumeclaims/status").
type requests map[string]map[string]int

// readRequests counts the requests the audit log at path records as
// received in [from, to).
func readRequests(path string, from, to time.Time) (requests, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := requests{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for sc.Scan() {
		var ev auditEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		at := ev.RequestReceivedTimestamp.Time
		if ev.Stage != "ResponseComplete" || at.Before(from) || !at.Before(to) {
			continue
		}
		kind := ev.Verb
		if r := ev.ObjectRef; r != nil {
			kind += " " + r.Resource
			if r.Subresource != "" {
				kind += "/" + r.Subresource
			}
		}
		out.add(client(ev.UserAgent), kind, 1)
	}
	return out, sc.Err()
}

func (r requests) add(client, kind string, n int) {
	if r[client] == nil {
		r[client] = map[string]int{}
	}
	r[client][kind] += n
}

// total returns client's requests, and of those the writes.
func (r requests) total(client string) (all, writes int) {
	for kind, n := range r[client] {
		all += n
		verb, _, _ := strings.Cut(kind, " ")
		if verb != "get" && verb != "list" {
			writes += n
		}
	}
	return all, writes
}

// client names the client of a user agent: the program, and for
// kube-controller-manager the controller, whose client (and so whose rate
// limit) is its own: "kube-controller-manager/v1.37.2 (linux/amd64)
// kubernetes/abc1234/persistent-volume-binder" is
// "kube-controller-manager/persistent-volume-binder".
func client(userAgent string) string {
	fields := strings.Fields(userAgent)
	if len(fields) == 0 {
		return "(none)"
	}
	program, _, _ := strings.Cut(fields[0], "/")
	if len(fields) >= 3 {
		if parts := strings.SplitN(fields[2], "/", 3); len(parts) == 3 && parts[0] == "kubernetes" {
			return program + "/" + parts[2]
		}
	}
	return program
}

// clientLimit is a client's token bucket: qps requests a second once burst
// requests are spent.
type clientLimit struct{ qps, burst float64 }

// kubernetesLimit returns the client-side rate limit a Kubernetes
// component's client has at the component's defaults: 20 QPS, burst 30 for
// each controller of kube-controller-manager (--kube-api-qps,
// --kube-api-burst; each controller has a client of its own), 50 and 100 for
// kube-scheduler. The harness starts both without these flags.
func kubernetesLimit(client string) (clientLimit, bool) {
	switch program, _, _ := strings.Cut(client, "/"); program {
	case "kube-controller-manager":
		return clientLimit{qps: 20, burst: 30}, true
	case "kube-scheduler":
		return clientLimit{qps: 50, burst: 100}, true
	}
	return clientLimit{}, false
}

// floor returns how long the Kubernetes client with the most work needs to
// send its requests at its default rate limit, starting with a full bucket,
// and which client that is: no driver can have its claims bound (or
// deleted) sooner than Kubernetes' own controllers get their writes out.
func (r requests) floor() (time.Duration, string) {
	var worst time.Duration
	var who string
	for _, c := range slices.Sorted(maps.Keys(r)) {
		limit, ok := kubernetesLimit(c)
		if !ok {
			continue
		}
		n, _ := r.total(c)
		d := time.Duration(max(0, float64(n)-limit.burst) / limit.qps * float64(time.Second))
		if d > worst || who == "" {
			worst, who = d, c
		}
	}
	return worst, who
}

// table describes the requests per claim of each client, most first, with
// each client's kinds of request.
func (r requests) table(claims int) string {
	var b strings.Builder
	clients := slices.Collect(maps.Keys(r))
	slices.SortFunc(clients, func(x, y string) int {
		nx, _ := r.total(x)
		ny, _ := r.total(y)
		if nx != ny {
			return ny - nx
		}
		return strings.Compare(x, y)
	})
	per := func(n int) string { return fmt.Sprintf("%.2f", float64(n)/float64(claims)) }
	for _, c := range clients {
		all, writes := r.total(c)
		kinds := slices.Collect(maps.Keys(r[c]))
		slices.SortFunc(kinds, func(x, y string) int {
			if r[c][x] != r[c][y] {
				return r[c][y] - r[c][x]
			}
			return strings.Compare(x, y)
		})
		var parts []string
		for _, k := range kinds {
			parts = append(parts, k+" "+per(r[c][k]))
		}
		fmt.Fprintf(&b, "  %-52s %6s per claim (%s writes): %s\n", c, per(all), per(writes), strings.Join(parts, ", "))
	}
	return b.String()
}
