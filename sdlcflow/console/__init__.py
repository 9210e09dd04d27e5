"""The reviewer web console: pending approvals, evidence bundles, signed approve/reject."""
