// Package bench measures the dirvol binary as a node runs it: how long a
// start takes until Probe reports ready, and how much memory the process
// holds by then, with an empty data dir and with 10,000 volumes. `make
// bench` runs it.
package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
)

const (
	// pollInterval is how often Probe is called while the driver starts.
	pollInterval = 2 * time.Millisecond
	// startTimeout bounds one start; recovery of 10,000 volumes takes
	// well under a second on a warm page cache.
	startTimeout = 2 * time.Minute
	// stopTimeout bounds the wait after SIGTERM before SIGKILL.
	stopTimeout = 30 * time.Second
)

// shared holds what the whole process reuses: the binary, built once, and
// data dirs, prepared once per number of volumes. TestMain removes it.
var shared struct {
	mu   sync.Mutex
	root string
	bin  string
	data map[int]string
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.root != "" {
		_ = os.RemoveAll(shared.root)
	}
	os.Exit(code)
}

func BenchmarkStartup0(b *testing.B) { benchmarkStartup(b, 0) }

func BenchmarkStartup10k(b *testing.B) { benchmarkStartup(b, 10000) }

// benchmarkStartup starts the driver b.N times on one data dir holding n
// volumes and reports, averaged over the starts: the time from exec until
// Probe first answers (ms-to-serving) and until it reports ready
// (ms-to-ready), and the resident set (MiB-RSS) and its peak (MiB-HWM) at
// that moment. Every start after the first finds the data dir in the page
// cache. ns/op covers exec to ready.
func benchmarkStartup(b *testing.B, n int) {
	bin, data := prepare(b, n)
	run := b.TempDir()
	var serving, ready time.Duration
	var rss, hwm float64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s := start(b, bin, data, filepath.Join(run, strconv.Itoa(i)))
		serving += s.serving
		ready += s.ready
		rss += s.rssMiB
		hwm += s.hwmMiB
		b.StopTimer()
		if i == 0 {
			if got := countVolumes(b, s.conn); got != n {
				b.Fatalf("the driver lists %d volumes, want %d: the data dir layout is not the driver's", got, n)
			}
		}
		s.stop(b)
		b.StartTimer()
	}
	per := float64(b.N)
	b.ReportMetric(float64(serving.Microseconds())/1000/per, "ms-to-serving")
	b.ReportMetric(float64(ready.Microseconds())/1000/per, "ms-to-ready")
	b.ReportMetric(rss/per, "MiB-RSS")
	b.ReportMetric(hwm/per, "MiB-HWM")
}

// started is one running driver process.
type started struct {
	cmd            *exec.Cmd
	exited         chan struct{}
	conn           *grpc.ClientConn
	log            string
	serving, ready time.Duration
	rssMiB, hwmMiB float64
}

// start execs the driver with its socket and log under dir and returns once
// Probe reports ready. The process is killed at cleanup if still running.
func start(b *testing.B, bin, data, dir string) *started {
	b.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		b.Fatal(err)
	}
	sock := filepath.Join(dir, "csi.sock")
	s := &started{log: filepath.Join(dir, "dirvol.log"), exited: make(chan struct{})}
	logFile, err := os.Create(s.log)
	if err != nil {
		b.Fatal(err)
	}
	defer logFile.Close()
	// Reconnect within a millisecond or two of the socket appearing;
	// the default backoff starts at one second.
	s.conn, err = grpc.NewClient("unix://"+sock,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: time.Millisecond, Multiplier: 1, MaxDelay: pollInterval},
			MinConnectTimeout: time.Second,
		}))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.conn.Close() })
	identity := csi.NewIdentityClient(s.conn)

	s.cmd = exec.Command(bin, "--endpoint", "unix://"+sock, "--data-dir", data, "--node-id", "bench", "--kubelet-registration-dir=")
	s.cmd.Stdout, s.cmd.Stderr = logFile, logFile
	begin := time.Now()
	if err := s.cmd.Start(); err != nil {
		b.Fatalf("start %s: %v", bin, err)
	}
	go func() { _ = s.cmd.Wait(); close(s.exited) }()
	b.Cleanup(func() {
		select {
		case <-s.exited:
		default:
			_ = s.cmd.Process.Kill()
			<-s.exited
		}
	})
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		resp, err := identity.Probe(ctx, &csi.ProbeRequest{})
		cancel()
		if err == nil && s.serving == 0 {
			s.serving = time.Since(begin)
		}
		if err == nil && resp.GetReady().GetValue() {
			s.ready = time.Since(begin)
			break
		}
		select {
		case <-s.exited:
			b.Fatalf("dirvol exited before it was ready (%v); its log:\n%s", s.cmd.ProcessState, s.logTail())
		default:
		}
		if time.Since(begin) > startTimeout {
			b.Fatalf("dirvol not ready after %s (last Probe error: %v); its log:\n%s", startTimeout, err, s.logTail())
		}
		time.Sleep(pollInterval)
	}
	s.rssMiB, s.hwmMiB = memory(b, s.cmd.Process.Pid)
	return s
}

// stop sends SIGTERM and waits for the process to exit, as the kubelet
// does; past stopTimeout it is killed and the benchmark fails.
func (s *started) stop(b *testing.B) {
	b.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		b.Fatalf("SIGTERM: %v", err)
	}
	select {
	case <-s.exited:
	case <-time.After(stopTimeout):
		_ = s.cmd.Process.Kill()
		<-s.exited
		b.Fatalf("dirvol still running %s after SIGTERM; its log:\n%s", stopTimeout, s.logTail())
	}
	if !s.cmd.ProcessState.Success() {
		b.Fatalf("dirvol stopped with %v; its log:\n%s", s.cmd.ProcessState, s.logTail())
	}
}

func (s *started) logTail() string {
	data, _ := os.ReadFile(s.log)
	if len(data) > 4000 {
		data = data[len(data)-4000:]
	}
	return string(data)
}

// memory reads VmRSS and VmHWM of a process, in MiB.
func memory(b *testing.B, pid int) (rss, hwm float64) {
	b.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	found := 0
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		key, value, ok := strings.Cut(sc.Text(), ":")
		if !ok || (key != "VmRSS" && key != "VmHWM") {
			continue
		}
		kiB, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(value), " kB"), 64)
		if err != nil {
			b.Fatalf("/proc/%d/status: %s: %v", pid, sc.Text(), err)
		}
		if key == "VmRSS" {
			rss = kiB / 1024
		} else {
			hwm = kiB / 1024
		}
		found++
	}
	if found != 2 {
		b.Fatalf("/proc/%d/status has no VmRSS or VmHWM:\n%s", pid, data)
	}
	return rss, hwm
}

// countVolumes pages through ListVolumes.
func countVolumes(b *testing.B, conn *grpc.ClientConn) int {
	b.Helper()
	ctrl := csi.NewControllerClient(conn)
	total, token := 0, ""
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		resp, err := ctrl.ListVolumes(ctx, &csi.ListVolumesRequest{MaxEntries: 1000, StartingToken: token})
		cancel()
		if err != nil {
			b.Fatalf("ListVolumes: %v", err)
		}
		total += len(resp.GetEntries())
		if token = resp.GetNextToken(); token == "" {
			return total
		}
	}
}
