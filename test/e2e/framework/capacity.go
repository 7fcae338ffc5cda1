package framework

import (
	"context"
	"fmt"
	"time"

	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
)

// Capacities returns, per node, the capacity in bytes that the node's
// provisioner publishes for class (CSIStorageCapacity objects in dirvol's
// namespace, whose node topology names the node through TopologyKey).
func (e *Env) Capacities(ctx context.Context, class string) (map[string]int64, error) {
	list, err := e.Kube.StorageV1().CSIStorageCapacities(e.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	for _, c := range list.Items {
		if c.StorageClassName != class || c.NodeTopology == nil || c.Capacity == nil {
			continue
		}
		if node, ok := c.NodeTopology.MatchLabels[TopologyKey]; ok {
			out[node] = c.Capacity.Value()
		}
	}
	return out, nil
}

// dirvolClasses returns the names of the StorageClasses of dirvol that bind
// late, those the provisioners publish capacity for.
func (e *Env) dirvolClasses(ctx context.Context) ([]string, error) {
	list, err := e.Kube.StorageV1().StorageClasses().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	var names []string
	for _, sc := range list.Items {
		if sc.Provisioner == DriverName && sc.VolumeBindingMode != nil && *sc.VolumeBindingMode == storagev1.VolumeBindingWaitForFirstConsumer {
			names = append(names, sc.Name)
		}
	}
	return names, nil
}

// WaitCapacities waits until every node has published capacity for every
// dirvol class: until then the scheduler treats the node as having no room.
func (e *Env) WaitCapacities(ctx context.Context, timeout time.Duration) error {
	var missing string
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		classes, err := e.dirvolClasses(ctx)
		if err != nil {
			return false, nil
		}
		for _, class := range classes {
			caps, err := e.Capacities(ctx, class)
			if err != nil {
				return false, nil
			}
			for _, n := range e.Nodes {
				if _, ok := caps[n]; !ok {
					missing = fmt.Sprintf("class %s on node %s", class, n)
					return false, nil
				}
			}
		}
		return len(classes) > 0, nil
	})
	if err != nil {
		return fmt.Errorf("CSIStorageCapacity for %s not published: %w", missing, err)
	}
	return nil
}
