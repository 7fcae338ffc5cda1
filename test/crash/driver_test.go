package crash

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
)

const (
	readyTimeout = 30 * time.Second
	logTailLines = 80
)

// recoveredPattern picks the counts out of the driver's end-of-recovery log
// line, for the figures the test prints.
var recoveredPattern = regexp.MustCompile(`"Volume catalog recovered".* rolledBackCreates=([0-9]+) finishedDeletes=([0-9]+)` +
	`.* rolledBackSnapshots=([0-9]+) finishedSnapshotDeletes=([0-9]+)`)

// recoveryCounts is what one start's recovery finished or rolled back.
type recoveryCounts struct {
	rolledBack, finished, rolledBackSnaps, finishedSnaps int
}

func (a recoveryCounts) add(b recoveryCounts) recoveryCounts {
	return recoveryCounts{a.rolledBack + b.rolledBack, a.finished + b.finished,
		a.rolledBackSnaps + b.rolledBackSnaps, a.finishedSnaps + b.finishedSnaps}
}

// harness builds the dirvol binary once and runs it, one process at a time,
// on one data dir.
type harness struct {
	t        *testing.T
	bin      string
	root     string
	dataDir  string
	endpoint string
	logPath  string
	starts   int
	proc     *driverProc
	// extraArgs are added to the driver's command line.
	extraArgs []string
}

// driverProc is one running dirvol process and a client connected to it.
type driverProc struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error // the result of Wait; read only after done is closed
	conn *grpc.ClientConn
	ctrl csi.ControllerClient
	// killed is set just before SIGKILL is sent, so that a call failing
	// because of the kill can tell.
	killed atomic.Bool
}

func newHarness(t *testing.T) *harness {
	root := t.TempDir()
	h := &harness{
		t:        t,
		bin:      filepath.Join(root, "dirvol"),
		root:     root,
		dataDir:  filepath.Join(root, "data"),
		endpoint: "unix://" + filepath.Join(root, "csi.sock"),
		logPath:  filepath.Join(root, "dirvol.log"),
	}
	build := exec.Command("go", "build", "-o", h.bin, "github.com/dirvol/dirvol/cmd/driver")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build dirvol: %v\n%s", err, out)
	}
	t.Cleanup(h.cleanup)
	return h
}

// cleanup kills whatever process is still running and, when the test
// failed, shows the end of the driver log.
func (h *harness) cleanup() {
	if p := h.proc; p != nil {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if p.conn != nil {
			_ = p.conn.Close()
		}
	}
	if h.t.Failed() {
		h.logTail()
	}
}

func (h *harness) logTail() {
	data, err := os.ReadFile(h.logPath)
	if err != nil {
		h.t.Logf("cannot read driver log: %v", err)
		return
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > logTailLines {
		lines = lines[len(lines)-logTailLines:]
	}
	h.t.Logf("last %d lines of %s:\n%s", len(lines), h.logPath, strings.Join(lines, "\n"))
}

// start runs dirvol on the data dir and waits until Probe says ready.
func (h *harness) start() {
	t := h.t
	t.Helper()
	h.starts++
	logf, err := os.OpenFile(h.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(logf, "===== dirvol start #%d =====\n", h.starts)
	// No kubelet here: registration off, so no socket lands in a
	// plugins_registry this host may have.
	cmd := exec.Command(h.bin, append([]string{"--endpoint", h.endpoint, "--data-dir", h.dataDir,
		"--node-id", "crash-node", "--kubelet-registration-dir=", "--v=2"}, h.extraArgs...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	err = cmd.Start()
	logf.Close() // the child holds its own descriptor
	if err != nil {
		t.Fatalf("start dirvol: %v", err)
	}
	p := &driverProc{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	h.proc = p
	// Short reconnect backoff: the socket appears only once the process
	// has taken the data dir lock and listens.
	conn, err := grpc.NewClient(h.endpoint,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 20 * time.Millisecond, Multiplier: 1.5, Jitter: 0.2, MaxDelay: 200 * time.Millisecond},
			MinConnectTimeout: time.Second,
		}))
	if err != nil {
		t.Fatalf("grpc client for %s: %v", h.endpoint, err)
	}
	p.conn, p.ctrl = conn, csi.NewControllerClient(conn)
	h.waitReady()
}

// waitReady polls Probe until the driver has recovered its catalog.
func (h *harness) waitReady() {
	t := h.t
	t.Helper()
	ident := csi.NewIdentityClient(h.proc.conn)
	deadline := time.Now().Add(readyTimeout)
	last := errors.New("no probe answered")
	for time.Now().Before(deadline) {
		select {
		case <-h.proc.done:
			t.Fatalf("dirvol start #%d exited before it was ready: %v", h.starts, h.proc.err)
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		resp, err := ident.Probe(ctx, &csi.ProbeRequest{})
		cancel()
		switch {
		case err != nil:
			last = err
		case resp.GetReady().GetValue():
			return
		default:
			last = errors.New("Probe answered not ready")
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("dirvol start #%d was not ready within %v: %v", h.starts, readyTimeout, last)
}

// kill sends SIGKILL to the running driver and waits for it to be gone.
func (h *harness) kill() {
	t := h.t
	t.Helper()
	p := h.proc
	select {
	case <-p.done:
		t.Fatalf("dirvol start #%d exited on its own before the kill: %v", h.starts, p.err)
	default:
	}
	p.killed.Store(true)
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("SIGKILL dirvol: %v", err)
	}
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		t.Fatalf("dirvol start #%d still running 10s after SIGKILL", h.starts)
	}
	var ee *exec.ExitError
	if !errors.As(p.err, &ee) {
		t.Fatalf("dirvol start #%d: Wait after SIGKILL = %v, want death by signal", h.starts, p.err)
	}
	if ws, ok := ee.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("dirvol start #%d ended with %v, not by SIGKILL", h.starts, p.err)
	}
	_ = p.conn.Close()
}

// checkDataDirLock starts a second driver on the data dir of the running
// one: it must refuse to run, saying the data dir is in use, and the first
// must carry on.
func (h *harness) checkDataDirLock() {
	t := h.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	second := "unix://" + filepath.Join(h.root, "second.sock")
	out, err := exec.CommandContext(ctx, h.bin, "--endpoint", second, "--data-dir", h.dataDir,
		"--node-id", "crash-node-2", "--kubelet-registration-dir=").CombinedOutput()
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Errorf("a second dirvol on data dir %s was still running after 10s; want it to refuse the locked data dir; output:\n%s", h.dataDir, out)
	case err == nil:
		t.Errorf("a second dirvol on data dir %s exited 0; want a non-zero exit because the data dir is in use; output:\n%s", h.dataDir, out)
	case !errors.As(err, &ee) || ee.ExitCode() <= 0:
		t.Errorf("a second dirvol on data dir %s: %v; want a non-zero exit; output:\n%s", h.dataDir, err, out)
	case !strings.Contains(string(out), "in use") || !strings.Contains(string(out), h.dataDir):
		t.Errorf("a second dirvol on data dir %s exited with %v but its output does not say the data dir is in use:\n%s", h.dataDir, err, out)
	default:
		t.Logf("a second dirvol on the same data dir refused to run (%v): %s", err, strings.TrimSpace(string(out)))
	}
	h.waitReady()
}

// currentLog returns what the running process has logged so far.
func (h *harness) currentLog() string {
	data, err := os.ReadFile(h.logPath)
	if err != nil {
		return ""
	}
	log := string(data)
	if i := strings.LastIndex(log, fmt.Sprintf("===== dirvol start #%d =====", h.starts)); i >= 0 {
		return log[i:]
	}
	return ""
}

// recovered returns what the current process's recovery rolled back or
// finished, as its log says; ok is false when the line cannot be found. The
// line follows readiness closely, so it is waited for briefly.
func (h *harness) recovered() (recoveryCounts, bool) {
	for range 50 {
		if m := recoveredPattern.FindStringSubmatch(h.currentLog()); m != nil {
			var n [4]int
			for i := range n {
				n[i], _ = strconv.Atoi(m[i+1])
			}
			return recoveryCounts{rolledBack: n[0], finished: n[1], rolledBackSnaps: n[2], finishedSnaps: n[3]}, true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return recoveryCounts{}, false
}
