# docker buildx bake -f deploy/docker/docker-bake.hcl   (from the repository root)
# The four service images from deploy/docker/Dockerfile; TAG=1.2.3 and REGISTRY=ghcr.io/acme/
# name published images REGISTRY + "streamrec/<service>:" + TAG.
variable "TAG" {
  default = "dev"
}

variable "REGISTRY" {
  default = ""
}

group "default" {
  targets = ["ingest", "recommender", "trainer", "stream-processor"]
}

target "service" {
  context    = "."
  dockerfile = "deploy/docker/Dockerfile"
  target     = "runtime"
}

target "ingest" {
  inherits = ["service"]
  args     = { SERVICE = "ingest", PORT = "8000" }
  tags     = ["${REGISTRY}streamrec/ingest:${TAG}"]
}

target "recommender" {
  inherits = ["service"]
  args     = { SERVICE = "recommender", PORT = "8001" }
  tags     = ["${REGISTRY}streamrec/recommender:${TAG}"]
}

target "trainer" {
  inherits = ["service"]
  args     = { SERVICE = "trainer", PORT = "8002" }
  tags     = ["${REGISTRY}streamrec/trainer:${TAG}"]
}

target "stream-processor" {
  inherits = ["service"]
  args     = { SERVICE = "stream-processor", PORT = "8003" }
  tags     = ["${REGISTRY}streamrec/stream-processor:${TAG}"]
}
