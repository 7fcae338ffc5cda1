// Command dirvol is a CSI driver that provisions directories on a node's disk
// as Kubernetes PersistentVolumes.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/dirvol/dirvol/cmd/driver/app"
	"k8s.io/klog/v2"
	mount "k8s.io/mount-utils"
)

// version is set at build time with -ldflags "-X main.version=...".
var version string

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run parses args and runs the driver; it returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("dirvol", flag.ContinueOnError)
	klog.InitFlags(fs)
	cfg := app.Config{Version: driverVersion()}
	if host, err := os.Hostname(); err == nil {
		cfg.NodeID = host
	}
	cfg.AddFlags(fs)
	showVersion := fs.Bool("version", false, "Print the version and exit.")
	// The flag package would print the whole usage (some fifty lines of
	// klog flags) after a bad value and bury the one line that matters.
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(stdout)
			_, _ = fmt.Fprintln(stdout, "Usage of dirvol:")
			fs.PrintDefaults()
			return 0
		}
		_, _ = fmt.Fprintf(stderr, "dirvol: %v\nRun dirvol --help for the flags.\n", err)
		return 2
	}
	if fs.NArg() > 0 {
		_, _ = fmt.Fprintf(stderr, "dirvol: unexpected argument %q: dirvol takes flags only\nRun dirvol --help for the flags.\n", fs.Arg(0))
		return 2
	}
	if *showVersion {
		_, _ = fmt.Fprintln(stdout, "dirvol", cfg.Version)
		return 0
	}
	defer klog.Flush()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	ctx = klog.NewContext(ctx, klog.Background())

	d, err := app.New(ctx, cfg, mount.New(""))
	if err != nil {
		klog.ErrorS(err, "Cannot start dirvol")
		return 1
	}
	if err := d.Run(ctx); err != nil {
		klog.ErrorS(err, "dirvol stopped with an error")
		return 1
	}
	klog.InfoS("dirvol stopped")
	return 0
}

// driverVersion is the -X version, else the module version and VCS revision
// from the build info.
func driverVersion() string {
	if version != "" {
		return version
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := info.Main.Version
	for _, s := range info.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			v += "+" + s.Value[:12]
		}
	}
	return v
}
