package conformance

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dirvol/dirvol/test/e2e/binaries"
)

// TestExternalStorage runs the plan's runs for each of its driver files, one
// after the other, with the ginkgo runner, each writing a JUnit report
// (junit_<pool>-<run>.xml) and the suite's output (<pool>-<run>.log) into the
// report directory. A run fails the test
// when ginkgo says a spec failed.
func TestExternalStorage(t *testing.T) {
	if env == nil {
		t.Skip(skipReason)
	}
	planName := os.Getenv(EnvPlan)
	plan, ok := plans[planName]
	if !ok {
		t.Fatalf("%s=%q: no such plan (full, ci)", EnvPlan, planName)
	}
	root, err := binaries.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	repo := filepath.Clean(filepath.Join(root, "..", ".."))
	reportDir := os.Getenv(EnvReportDir)
	if reportDir == "" {
		reportDir = filepath.Join(repo, "bin", "conformance")
	}
	if reportDir, err = filepath.Abs(reportDir); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(reportDir, 0o755); err != nil {
		t.Fatal(err)
	}
	driverFiles := plan.DriverFiles
	if v := os.Getenv(EnvDriverFile); v != "" {
		driverFiles = strings.Split(v, ",")
	}
	for i, f := range driverFiles {
		if !filepath.IsAbs(f) && !strings.Contains(f, "/") {
			f = filepath.Join(root, "conformance", f)
		}
		if driverFiles[i], err = filepath.Abs(f); err != nil {
			t.Fatal(err)
		}
	}
	procs := 3
	if p := os.Getenv(EnvProcs); p != "" {
		if procs, err = strconv.Atoi(p); err != nil || procs < 1 {
			t.Fatalf("%s=%q: want a number of processes", EnvProcs, p)
		}
	}
	hostExec := ""
	if env.Local != nil {
		if f, err := os.Open("/proc/1/ns/mnt"); err != nil {
			t.Logf("not running the host-exec specs (%s): this host refuses to open PID 1's mount namespace: %v", hostExecOnThisMachine, err)
			hostExec = "|" + hostExecOnThisMachine
		} else {
			f.Close()
		}
	}
	var only []string
	if v := os.Getenv(EnvRuns); v != "" {
		only = strings.Split(v, ",")
	}
	for _, driverFile := range driverFiles {
		for _, r := range plan.Runs {
			if only != nil && !slices.Contains(only, r.Name) {
				continue
			}
			if f := os.Getenv(EnvFocus); f != "" {
				r.Focus = f
			}
			runSuite(t, driverPool(driverFile)+"-"+r.Name, r.Focus, r.Skip+hostExec, driverFile, reportDir, repo, procs)
		}
	}
}

// driverPool is the <pool> of a testdriver-<pool>.yaml file name (the whole
// base name for another name).
func driverPool(driverFile string) string {
	base := strings.TrimSuffix(filepath.Base(driverFile), filepath.Ext(driverFile))
	return strings.TrimPrefix(base, "testdriver-")
}

// runSuite runs the specs matching focus and not skip with the given driver
// file, as subtest name, reporting into reportDir/junit_<name>.xml and
// <name>.log.
func runSuite(t *testing.T, name, focus, skip, driverFile, reportDir, repo string, procs int) {
	t.Run(name, func(t *testing.T) {
		logFile := filepath.Join(reportDir, name+".log")
		log, err := os.Create(logFile)
		if err != nil {
			t.Fatal(err)
		}
		defer log.Close()
		args := []string{
			"--procs=" + strconv.Itoa(procs),
			"--timeout=2h",
			"--no-color",
			"--output-dir=" + reportDir,
			"--junit-report=junit_" + name + ".xml",
			"--focus=" + focus,
			"--skip=" + skip,
			bins.Path(binaries.StorageSuite),
			"--",
			"-kubeconfig=" + env.Kubeconfig,
			"-kubectl-path=" + env.KubectlPath,
			"-storage.testdriver=" + driverFile,
			// The driver file's FromFile paths are relative to the
			// repository.
			"-repo-root=" + repo,
		}
		cmd := exec.CommandContext(t.Context(), bins.Path(binaries.Ginkgo), args...)
		cmd.Dir = repo
		cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(env.KubectlPath)+string(os.PathListSeparator)+os.Getenv("PATH"))
		cmd.Stdout, cmd.Stderr = log, log
		t.Logf("ginkgo %q\noutput: %s", args, logFile)
		start := time.Now()
		err = cmd.Run()
		t.Logf("run %s took %s; JUnit report %s", name, time.Since(start).Round(time.Second), filepath.Join(reportDir, "junit_"+name+".xml"))
		tail, _ := exec.Command("tail", "-n", "40", logFile).Output()
		fmt.Fprintf(os.Stdout, "--- the end of %s:\n%s\n", logFile, tail)
		if err != nil {
			t.Errorf("ginkgo: %v (see %s)", err, logFile)
		}
	})
}
