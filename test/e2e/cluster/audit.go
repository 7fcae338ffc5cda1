package cluster

import (
	"os"
	"path/filepath"
)

// auditPolicy records every request but watches, once each (when the
// response is complete), with its metadata only: verb, resource, user agent
// and timestamps, which is what counting API requests per client needs. No
// request or response bodies, so the apiserver's cost stays small.
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived, ResponseStarted]
rules:
  - level: None
    verbs: [watch]
  - level: Metadata
`

// auditArgs writes the audit policy into the run directory and returns the
// kube-apiserver flags that log every request to path, as JSON lines.
func (c *Cluster) auditArgs(path string) ([]string, error) {
	policy := filepath.Join(c.dir, "audit-policy.yaml")
	if err := os.WriteFile(policy, []byte(auditPolicy), 0o644); err != nil {
		return nil, err
	}
	return []string{
		"--audit-policy-file=" + policy,
		"--audit-log-path=" + path,
		"--audit-log-format=json",
		// One file for the whole run: the reader needs every line.
		"--audit-log-maxsize=0",
		// Each request is written before its response returns, so a count
		// taken once a phase is over has all of that phase's requests.
		"--audit-log-mode=blocking",
	}, nil
}
