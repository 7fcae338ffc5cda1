package framework

import (
	"bytes"
	"context"
	"fmt"
	"io"
	osexec "os/exec"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/remotecommand"
)

// Exec runs cmd in a container of a running pod through the API's
// pods/exec (kube-apiserver to the kubelet to the runtime), as kubectl exec
// does: WebSocket first, SPDY when the server refuses the upgrade. stdin,
// when not nil, is the command's standard input.
func (e *Env) Exec(ctx context.Context, ns, pod, container string, cmd []string, stdin io.Reader) (stdout, stderr string, err error) {
	req := e.Kube.CoreV1().RESTClient().Post().Resource("pods").Namespace(ns).Name(pod).SubResource("exec").
		VersionedParams(&corev1.PodExecOptions{
			Container: container,
			Command:   cmd,
			Stdin:     stdin != nil,
			Stdout:    true,
			Stderr:    true,
		}, scheme.ParameterCodec)
	ws, err := remotecommand.NewWebSocketExecutor(e.Config, "GET", req.URL().String())
	if err != nil {
		return "", "", err
	}
	spdy, err := remotecommand.NewSPDYExecutor(e.Config, "POST", req.URL())
	if err != nil {
		return "", "", err
	}
	exec, err := remotecommand.NewFallbackExecutor(ws, spdy, func(err error) bool {
		return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)
	})
	if err != nil {
		return "", "", err
	}
	var out, errOut bytes.Buffer
	err = exec.StreamWithContext(ctx, remotecommand.StreamOptions{Stdin: stdin, Stdout: &out, Stderr: &errOut})
	if err != nil {
		err = fmt.Errorf("exec %q in %s/%s: %w (stderr: %s)", strings.Join(cmd, " "), ns, pod, err, errOut.String())
	}
	return out.String(), errOut.String(), err
}

// Logs returns a container's log through the API (kube-apiserver to the
// kubelet), as kubectl logs does.
func (e *Env) Logs(ctx context.Context, ns, pod, container string) (string, error) {
	b, err := e.Kube.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{Container: container}).Do(ctx).Raw()
	if err != nil {
		return "", fmt.Errorf("logs of %s/%s: %w", ns, pod, err)
	}
	return string(b), nil
}

// Kubectl runs the kubectl binary against the cluster with args and stdin
// (when not nil), and returns its standard output; an error carries its
// standard error.
func (e *Env) Kubectl(ctx context.Context, stdin io.Reader, args ...string) (string, error) {
	cmd := osexec.CommandContext(ctx, e.KubectlPath, append([]string{"--kubeconfig=" + e.Kubeconfig}, args...)...)
	cmd.Stdin = stdin
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, errOut.String())
	}
	return out.String(), nil
}
