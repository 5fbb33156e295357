# Attribution: cgroup id + comm -> namespace/workload/pod/container.
list(APPEND IMDSWATCH_SOURCES
  cgroup_path.cpp
  cgroup_resolver.cpp
  pod_store.cpp
  kube_client.cpp
  attributor.cpp)
