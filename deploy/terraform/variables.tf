variable "hcloud_token" {
  description = "Hetzner Cloud API token (read/write). Leave null and export HCLOUD_TOKEN instead."
  type        = string
  default     = null
  sensitive   = true
}

variable "name" {
  description = "Prefix of every resource name (seed 001 used autoscale-ai)."
  type        = string
  default     = "concierge"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,40}$", var.name))
    error_message = "Use lowercase letters, digits and dashes."
  }
}

variable "environment" {
  description = "prod or stage; becomes a label and part of the server name."
  type        = string
  default     = "prod"

  validation {
    condition     = contains(["prod", "stage"], var.environment)
    error_message = "environment must be prod or stage."
  }
}

variable "location" {
  description = "Hetzner location: nbg1 (Nuremberg, seed 001), fsn1, hel1, ash, hil, sin."
  type        = string
  default     = "nbg1"
}

variable "server_type" {
  description = "Server type. Seed 001: ccx33 (8 dedicated vCPU); a cx32 or cpx31 suits staging."
  type        = string
  default     = "ccx33"
}

variable "image" {
  description = "OS image. cloud-init.yaml expects Ubuntu (22.04 or 24.04)."
  type        = string
  default     = "ubuntu-24.04"
}

variable "ssh_public_key" {
  description = "The operator's SSH public key (contents, e.g. of ~/.ssh/id_ed25519.pub)."
  type        = string
}

variable "ssh_allowed_cidrs" {
  description = "Addresses allowed to reach SSH (22) through the Hetzner firewall and UFW. Restrict to your office/VPN; 0.0.0.0/0 and ::/0 allow everyone."
  type        = list(string)

  validation {
    condition     = length(var.ssh_allowed_cidrs) > 0
    error_message = "Give at least one CIDR for SSH."
  }
}

variable "admin_user" {
  description = "Unix user created by cloud-init for operators and CI deploys (docker group, sudo). Root login over SSH is disabled."
  type        = string
  default     = "deploy"
}

variable "volume_size" {
  description = "Size in GB of the data volume mounted on /mnt/data (PostgreSQL, Redis, backups, metrics, certificates)."
  type        = number
  default     = 50
}

variable "server_backups" {
  description = "Hetzner's daily server backups (7 kept, +20 % of the server price). They cover the server's disk, NOT the volume."
  type        = bool
  default     = true
}

variable "protection" {
  description = "Delete/rebuild protection on the server (the volume is always delete-protected)."
  type        = bool
  default     = true
}

variable "app_dir" {
  description = "Where the deploy kit lives on the server."
  type        = string
  default     = "/opt/concierge"
}

variable "labels" {
  description = "Extra labels on every resource."
  type        = map(string)
  default     = {}
}

# --- scale-out (optional) ------------------------------------------------------------------

variable "scale_out" {
  description = "Create a private network, extra app nodes and a load balancer (modules/scale-out)."
  type        = bool
  default     = false
}

variable "extra_app_nodes" {
  description = "Number of additional app nodes behind the load balancer (with scale_out)."
  type        = number
  default     = 1
}

variable "app_node_server_type" {
  description = "Server type of the additional app nodes."
  type        = string
  default     = "cpx31"
}

variable "load_balancer_type" {
  description = "Hetzner load balancer type."
  type        = string
  default     = "lb11"
}

variable "network_cidr" {
  description = "Private network range (with scale_out). nginx trusts the load balancer from it."
  type        = string
  default     = "10.0.0.0/16"
}
