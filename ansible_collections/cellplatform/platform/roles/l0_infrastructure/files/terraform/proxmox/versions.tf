# cellplatform Proxmox root module: provider and Terraform versions.
terraform {
  required_version = ">= 1.5.0"

  required_providers {
    proxmox = {
      source  = "bpg/proxmox"
      version = "0.111.1"
    }
  }

  # Local state next to this module unless init gets -backend-config=path=... (the
  # terraform_apply module's backend_config option). Swap the backend in an override file
  # (backend_override.tf) to keep state elsewhere.
  backend "local" {}
}

# Credentials never come from variables: the provider reads PROXMOX_VE_API_TOKEN
# ("user@realm!tokenid=secret") from the environment. Endpoint and TLS verification come from
# the rendered variables (cell.auto.tfvars.json).
provider "proxmox" {
  endpoint = var.proxmox.endpoint
  insecure = var.proxmox.insecure
}
