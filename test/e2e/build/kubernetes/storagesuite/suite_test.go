// Package storagesuite is the Kubernetes external storage test suite
// (k8s.io/kubernetes/test/e2e/storage/external and the storage test suites
// it registers) as a test binary of its own.
//
// Upstream's e2e.test links every e2e area (apps, network, node, ...) and
// takes about 17 minutes to compile on two cores; the storage specs need
// only the framework and the storage packages. This file does what
// test/e2e/e2e_test.go and e2e.go do for them: the same flags, the same
// Ginkgo configuration and reporters, and the suite setup that matters for
// storage (nodes schedulable, the cluster's IP family). The specs are
// upstream's, unchanged; which ones run is chosen with -ginkgo.focus/skip
// and the -storage.testdriver file.
package storagesuite

import (
	"context"
	"flag"
	"fmt"
	"os"
	"testing"

	"github.com/onsi/ginkgo/v2"
	"github.com/onsi/gomega"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/component-base/logs"
	"k8s.io/component-base/version"
	"k8s.io/klog/v2"
	"k8s.io/kubernetes/test/e2e/framework"
	"k8s.io/kubernetes/test/e2e/framework/config"
	e2enode "k8s.io/kubernetes/test/e2e/framework/node"
	"k8s.io/kubernetes/test/e2e/framework/testfiles"
	e2etestingmanifests "k8s.io/kubernetes/test/e2e/testing-manifests"
	utilnet "k8s.io/utils/net"

	// The specs: the -storage.testdriver flag and every storage test suite
	// run against the drivers it names.
	_ "k8s.io/kubernetes/test/e2e/storage/external"

	// Feature and label constants, frozen before the specs are defined.
	_ "k8s.io/kubernetes/test/e2e/feature"

	// The framework's reconfiguration, as upstream's e2e.test links it:
	// dumps of events and logs on failure, metrics and node checks.
	_ "k8s.io/kubernetes/test/e2e/framework/debug/init"
	_ "k8s.io/kubernetes/test/e2e/framework/metrics/init"
	_ "k8s.io/kubernetes/test/e2e/framework/node/init"
	_ "k8s.io/kubernetes/test/utils/ktesting/format"

	// Auth plugins for kubeconfigs that use them; logging flags.
	_ "k8s.io/client-go/plugin/pkg/client/auth"
	_ "k8s.io/component-base/logs/testinit"
)

func TestMain(m *testing.M) {
	var versionFlag bool
	flag.CommandLine.BoolVar(&versionFlag, "version", false, "Displays version information.")
	config.CopyFlags(config.Flags, flag.CommandLine)
	framework.RegisterCommonFlags(flag.CommandLine)
	framework.RegisterClusterFlags(flag.CommandLine)
	flag.Parse()

	if versionFlag {
		fmt.Printf("%s\n", version.Get())
		os.Exit(0)
	}
	if flag.CommandLine.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "unknown additional command line arguments: %s\n", flag.CommandLine.Args())
		os.Exit(1)
	}

	// The storage specs read a few manifests (CSI test drivers, pod
	// templates) through testfiles; the embedded copy serves them, and
	// -repo-root (where the test driver file's FromFile paths are
	// resolved) is searched first.
	if framework.TestContext.RepoRoot != "" {
		testfiles.AddFileSource(testfiles.RootFileSource{Root: framework.TestContext.RepoRoot})
	}
	testfiles.AddFileSource(e2etestingmanifests.GetE2ETestingManifestsFS())

	framework.AfterReadingAllFlags(&framework.TestContext)
	os.Exit(m.Run())
}

func TestStorage(t *testing.T) {
	// As upstream: InitLogs turns contextual logging off, the suite wants
	// it on.
	logs.InitLogs()
	defer logs.FlushLogs()
	klog.EnableContextualLogging(true)

	gomega.RegisterFailHandler(framework.Fail)
	suiteConfig, reporterConfig := framework.CreateGinkgoConfig()
	klog.Infof("Starting storage e2e run %q on Ginkgo node %d", framework.RunID, suiteConfig.ParallelProcess)
	ginkgo.RunSpecs(t, "Kubernetes external storage suite", suiteConfig, reporterConfig)
}

var _ = ginkgo.SynchronizedBeforeSuite(func(ctx context.Context) []byte {
	// Once per run: the nodes must take pods before any spec starts.
	c, err := framework.LoadClientset()
	framework.ExpectNoError(err, "loading the client from the kubeconfig")
	timeouts := framework.NewTimeoutContext()
	framework.ExpectNoError(e2enode.WaitForAllNodesSchedulable(ctx, c, timeouts.NodeSchedulable))
	return nil
}, func(ctx context.Context, _ []byte) {
	// On every Ginkgo process: the IP family some helpers format
	// addresses with, from the kubernetes Service's cluster IP.
	c, err := framework.LoadClientset()
	framework.ExpectNoError(err, "loading the client from the kubeconfig")
	svc, err := c.CoreV1().Services(metav1.NamespaceDefault).Get(ctx, "kubernetes", metav1.GetOptions{})
	framework.ExpectNoError(err, "reading the kubernetes Service")
	framework.TestContext.IPFamily = "ipv4"
	if utilnet.IsIPv6String(svc.Spec.ClusterIP) {
		framework.TestContext.IPFamily = "ipv6"
	}
})
