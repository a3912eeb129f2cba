"""Example relying parties of Hoviyat: a carmaker's sales portal and a mobile-device registry."""
