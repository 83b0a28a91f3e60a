"""Who may say what on the broker: certificates, passwords and the ACL of the secure
configuration (`mosquitto-secure.conf`), made by `sensing secure-setup`."""
