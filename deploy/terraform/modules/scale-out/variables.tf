variable "prefix" {
  description = "Name prefix (name-environment)."
  type        = string
}

variable "labels" {
  type    = map(string)
  default = {}
}

variable "location" {
  type = string
}

variable "network_zone" {
  description = "Network zone of the location (eu-central for nbg1, fsn1, hel1)."
  type        = string
}

variable "network_cidr" {
  type = string
}

variable "primary_server_id" {
  description = "The primary server (database, Redis, monitoring, first app node)."
  type        = string
}

variable "node_count" {
  description = "Additional app nodes."
  type        = number
}

variable "server_type" {
  type = string
}

variable "image" {
  type = string
}

variable "ssh_key_ids" {
  type = list(string)
}

variable "firewall_ids" {
  type = list(string)
}

variable "placement_group_id" {
  type = string
}

variable "load_balancer_type" {
  type = string
}

variable "protection" {
  type = bool
}

variable "node_user_data" {
  description = "cloud-init for the additional nodes (no data volume)."
  type        = string
}
