package cluster

import (
	"context"
	"fmt"
	"time"

	"github.com/dirvol/dirvol/test/e2e/helmchart"
)

// ChartInstall is `helm install` of dirvol's chart, the other way than
// deploy/'s kustomizations to put dirvol on the real node.
type ChartInstall struct {
	// Helm runs the pinned helm; the cluster sets its Kubeconfig.
	Helm helmchart.Helm
	// Chart is the chart's directory (charts/dirvol).
	Chart string
	// Release and Namespace name the release and where helm keeps its
	// record (the chart's objects go to the namespace its values name).
	Release, Namespace string
	// Args are the values a user would give (--set, --values).
	Args []string
}

// installChart renders the chart as helm template to ready the host for
// its DaemonSet, runs helm install with the cluster's kubeconfig, and waits
// for the driver's pod on the real node and its registration.
func (c *Cluster) installChart(ctx context.Context, r *RealNode, ci ChartInstall) error {
	h := ci.Helm
	h.Kubeconfig = c.Kubeconfig
	objs, err := h.Template(ctx, ci.Release, ci.Chart, ci.Args...)
	if err != nil {
		return err
	}
	if err := prepareHost(r, objs); err != nil {
		return err
	}
	begin := time.Now()
	args := append([]string{"install", ci.Release, ci.Chart, "--namespace", ci.Namespace}, ci.Args...)
	if _, err := h.Run(ctx, args...); err != nil {
		return err
	}
	fmt.Fprintf(c.opts.Log, "e2e: helm install %s took %s\n", ci.Release, time.Since(begin).Round(time.Millisecond))
	return c.waitDriver(ctx, r)
}
