module github.com/dirvol/dirvol

go 1.26.8

require (
	golang.org/x/sys v0.49.0
	k8s.io/mount-utils v0.37.2
)

require (
	github.com/go-logr/logr v1.4.4 // indirect
	github.com/moby/sys/mountinfo v0.7.2 // indirect
	github.com/stretchr/testify v1.12.1 // indirect
	k8s.io/klog/v2 v2.140.0 // indirect
	k8s.io/utils v0.0.0-20261023123148-ca04ba58ecab // indirect
)
