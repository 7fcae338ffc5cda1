package app

import (
	"github.com/dirvol/dirvol/pkg/volume"
	"github.com/prometheus/client_golang/prometheus"
)

// poolSizesCollector exports, per pool, whether volume sizes are enforced
// as of the pool's last check. It reads what the checks recorded; a scrape
// does no I/O.
type poolSizesCollector struct {
	vols     *volume.Manager
	enforced *prometheus.Desc
	failing  *prometheus.Desc
}

func newPoolSizesCollector(vols *volume.Manager) *poolSizesCollector {
	return &poolSizesCollector{
		vols: vols,
		enforced: prometheus.NewDesc("dirvol_pool_sizes_enforced",
			"1 when a write past a volume's size fails in this pool (btrfs quota limits that the kernel's quota status says hold), 0 otherwise (dir pools never enforce sizes).",
			[]string{"pool"}, nil),
		failing: prometheus.NewDesc("dirvol_pool_size_enforcement_failing",
			"1 when the pool's backend enforces sizes but cannot now (btrfs quota figures inconsistent or rescanning, quotas turned off); the log and volume health say why. Alert on this.",
			[]string{"pool"}, nil),
	}
}

func (c *poolSizesCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.enforced
	ch <- c.failing
}

func (c *poolSizesCollector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c.vols.Sizes() {
		ch <- prometheus.MustNewConstMetric(c.enforced, prometheus.GaugeValue, b2f(s.Enforced), s.Pool)
		ch <- prometheus.MustNewConstMetric(c.failing, prometheus.GaugeValue, b2f(s.Problem != nil), s.Pool)
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
