terraform {
  required_version = ">= 1.5.0"

  required_providers {
    hcloud = {
      source  = "hetznercloud/hcloud"
      version = "~> 1.50"
    }
  }

  # State is local by default (terraform.tfstate, never commit it). For a team, keep it in
  # an S3-compatible bucket (Hetzner Object Storage works), for example:
  # backend "s3" {
  #   bucket                      = "concierge-tfstate"
  #   key                         = "prod/terraform.tfstate"
  #   region                      = "main"
  #   endpoints                   = { s3 = "https://fsn1.your-objectstorage.com" }
  #   skip_credentials_validation = true
  #   skip_region_validation      = true
  #   skip_requesting_account_id  = true
  #   skip_metadata_api_check     = true
  #   use_path_style              = true
  # }
}

provider "hcloud" {
  # Read from HCLOUD_TOKEN when unset (recommended: keep the token out of files).
  token = var.hcloud_token
}
