"""The LibreBooking (Booked Scheduler) connector: a site calendar as a PCC front end."""
